"""acklab's command line: see a lab, run commands in it, clean it up."""
