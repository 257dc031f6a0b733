# shellcheck shell=bash
# progress_run LABEL CMD...: run CMD and print "LABEL: still running, Ns" every ${ACKLAB_PROGRESS_EVERY:-20}
# seconds until it ends, so a step of several minutes says that it is alive. Returns CMD's status.
# Its own lines go to stderr: a caller may silence CMD's output (>/dev/null) and still see them.
progress_run() {
  local label=$1; shift
  local every=${ACKLAB_PROGRESS_EVERY:-20} start=$SECONDS
  echo "    $label ..." >&2
  "$@" &
  local pid=$!
  (
    trap 'kill $! 2>/dev/null; exit 0' TERM  # end the pending sleep too: it holds our stderr open
    while :; do
      sleep "$every" & wait $!
      kill -0 "$pid" 2>/dev/null || exit 0
      echo "    $label: still running, $(( SECONDS - start ))s" >&2
    done
  ) &
  local ticker=$! status=0
  wait "$pid" || status=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  echo "    $label: done in $(( SECONDS - start ))s (status $status)" >&2
  return "$status"
}
