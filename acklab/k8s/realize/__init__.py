"""The Kubernetes side on the kernel: pods plumbed per datapath, Terway's ENIs, upstream kube-proxy and the
compiler's rule applier, NetworkPolicy's chains and sets, nginx in the ingress controller pods, the pod agent. Each
realizes the model of the same name in ``model/``."""
