"""The Kubernetes side of a lab: manifests → pods (pure model), the pod agent, pod plumbing per datapath.

Layers inside this package, as in ``netns/``: ``model/`` is pure (no root, no kernel, no API server), ``realize/``
puts each model on the kernel under the same name (``model/pod_network`` → ``realize/pod_network``,
``model/kube_proxy`` → ``realize/kube_proxy``, ...). At the top: what runs on the API (the node agent, the cloud,
ingress and cluster controllers, the NetworkPolicy agent, the cluster's DNS) and the installers that start them
(``cluster_install``, ``ack_cluster``).
"""
