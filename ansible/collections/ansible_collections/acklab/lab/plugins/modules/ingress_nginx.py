#!/usr/bin/python
"""Module: make the lab's ingress-nginx controller pods serve the Ingresses of the manifests."""

from __future__ import annotations

DOCUMENTATION = r"""
module: ingress_nginx
short_description: Configure nginx in the ingress-nginx controller pods from Ingress manifests
description:
  - Reads the lab's manifests (networking.k8s.io/v1 Ingress and IngressClass, Services, TLS Secrets, and the
    pods they select), renders nginx's configuration for the Ingresses of the C(nginx) class
    (controller C(k8s.io/ingress-nginx)) and applies it in every controller pod - pods in C(kube-system)
    labelled C(app=ingress-nginx) or C(app.kubernetes.io/name=ingress-nginx).
  - nginx runs inside each controller pod's network namespace (pidfile under C(/run/acklab/<lab>/ingress/)).
    Changed endpoints are handed to nginx's Lua balancer without a reload. A new configuration is checked with
    C(nginx -t), swapped in atomically and loaded with a graceful reload (SIGHUP), which is verified; an invalid
    Ingress fails the task naming the Ingress, the field and the reason, and leaves the running configuration
    untouched.
  - Endpoints are pods that the manifests want and that run, so running this module before the pod network
    role drains pods about to be removed, and running it after adds new pods.
  - Changes nothing (C(changed=false)) when every controller already serves the rendered configuration.
author: acklab
version_added: 0.1.0
options:
  lab:
    description: The lab (Pulumi stack).
    type: str
    required: true
  manifests:
    description: The folder of Kubernetes manifests (C(*.yaml)).
    type: path
    required: true
  http_port:
    description: The port nginx serves HTTP on in the controller pods.
    type: int
    default: 80
  https_port:
    description: The port nginx serves HTTPS on in the controller pods.
    type: int
    default: 443
  workers:
    description: nginx worker processes per controller pod; C(0) is one per CPU (ingress-nginx's default).
    type: int
    default: 0
"""

EXAMPLES = r"""
- name: Configure the ingress controllers
  acklab.lab.ingress_nginx:
    lab: default
    manifests: /srv/acklab/labs/default/k8s
"""

RETURN = r"""
changes:
  description: What was started, reloaded or stopped.
  type: list
  elements: str
  returned: always
controllers:
  description: The controller pods (namespace/name, ip, node) and the configuration generation each serves.
  type: list
  elements: dict
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "lab": {"type": "str", "required": True},
            "manifests": {"type": "path", "required": True},
            "http_port": {"type": "int", "default": 80},
            "https_port": {"type": "int", "default": 443},
            "workers": {"type": "int", "default": 0},
        },
        supports_check_mode=False,
    )
    try:
        from acklab.k8s import ingress_controller as ctl
        from acklab.k8s.model import load_manifests
        from netns.model.errors import LabError
    except ImportError as exc:
        module.fail_json(msg=f"acklab is not importable by this interpreter: {exc} "
                             "(set ansible_python_interpreter to the project's .venv/bin/python)")
        return
    p = module.params
    options = ctl.Options(http=p["http_port"], https=p["https_port"], workers=p["workers"])
    try:
        changes = ctl.sync(p["lab"], load_manifests(p["manifests"]), options)
    except (LabError, ValueError, OSError) as exc:
        module.fail_json(msg=str(exc))
        return
    controllers = [{"pod": r.pod.key, "ip": r.ip, "node": r.node,
                    "generation": ctl.NginxPod(p["lab"], r).generation(options.status)}
                   for r in ctl.controller_pods(p["lab"])]
    module.exit_json(changed=bool(changes), changes=changes, controllers=controllers)


if __name__ == "__main__":
    main()
