"""The Kubernetes side of a lab: manifests → pods (pure model), the pod agent, pod plumbing per datapath.

Layers inside this package: ``model`` and ``ipam`` are pure (no root, no kernel); ``agent`` is the process that
answers on the pods' ports; ``pods`` and ``datapath`` realize pods on the kernel from a node's namespace.
"""
