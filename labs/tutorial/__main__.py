"""The tutorials' lab: the default lab (the project's ``__main__.py``, run as is) plus what the tutorials need.

- ``web-1``, ``web-2``: ECS in vSwitch ``vsw-i``, each running a small HTTP server on port 8080 from its user data;
- security group ``web`` on them: TCP 8080 from the nodes' vSwitch and from the SLBs' 100.64.0.0/10 (where Alibaba's
  SLBs run their health checks from), nothing else
  (so pods, which have addresses of the pod vSwitch, need a rule: stack setting ``acklab:allowPods true``);
- SLB ``lb`` (intranet, 192.168.2.100) with a TCP listener 80 → 8080 in front of web-1 and web-2.

Built by ``make tutorial`` (stack ``$ACKLAB_LAB``, default ``tutorial``) the way ``make up`` builds a lab: this
program, then the cluster on its API server (``cluster.yml``) and ``kubectl apply`` of ``k8s/`` (the default lab's
manifests); see docs/tutorials/.
"""

import runpy
from pathlib import Path

import pulumi
import pulumi_alicloud as alicloud

# the default lab (its workloads, k8s/, come through the API: make tutorial applies them)
lab = runpy.run_path(str(Path(__file__).resolve().parents[2] / "__main__.py"))
config = pulumi.Config("acklab")
allow_pods = config.get_bool("allowPods") or False

SERVER = """#!/bin/sh
exec python3 -u -c '
import http.server, socket
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from %s, you are %s\\n" % (socket.gethostname(), self.client_address[0])).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        print(self.client_address[0], self.requestline)
print("listening on 8080")
http.server.ThreadingHTTPServer(("", 8080), Handler).serve_forever()
'
"""

web = alicloud.ecs.SecurityGroup("web", vpc_id=lab["network"].id, security_group_name="web",
                                 inner_access_policy="Accept")
sources = {"nodes": "192.168.1.0/24", "slb": "100.64.0.0/10"}  # priority 1, 2 (3: pods)
if allow_pods:
    sources["pods"] = "192.168.3.0/24"  # the pod vSwitch (Terway): pods reach web-* with their own addresses
for priority, (name, cidr) in enumerate(sources.items(), start=1):
    alicloud.ecs.SecurityGroupRule(f"web-8080-from-{name}", security_group_id=web.id, type="ingress",
                                   ip_protocol="tcp", port_range="8080/8080", cidr_ip=cidr, priority=priority)

servers = {f"web-{n}": alicloud.ecs.Instance(f"web-{n}", instance_name=f"web-{n}", vswitch_id=lab["zone_i"].id,
                                             private_ip=f"192.168.2.2{n}", instance_type="ecs.g7.large",
                                             image_id=lab["IMAGE"], security_groups=[web.id], host_name=f"web-{n}",
                                             user_data=SERVER) for n in (1, 2)}

lb = alicloud.slb.ApplicationLoadBalancer("lb", load_balancer_name="web", address_type="intranet",
                                          vswitch_id=lab["zone_i"].id, address="192.168.2.100")
alicloud.slb.BackendServer("lb-backends", load_balancer_id=lb.id,
                           backend_servers=[{"server_id": server.id, "weight": 100} for server in servers.values()])
alicloud.slb.Listener("tcp-80", load_balancer_id=lb.id, frontend_port=80, protocol="tcp", backend_port=8080,
                      scheduler="rr", health_check_interval=1)

pulumi.export("web", {name: server.private_ip for name, server in servers.items()})
pulumi.export("slb_address", lb.address)
