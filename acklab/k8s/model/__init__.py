"""The Kubernetes side's pure models: objects from manifests and the API, pod addressing, Services, the rule
compilers (kube-proxy's, NetworkPolicy's), the Ingress renderer, the SLB a LoadBalancer Service gets. No kernel, no
processes, no API server: tested without root. Their kernel realizations carry the same names in ``realize/``."""
