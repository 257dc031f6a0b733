"""An ACK managed cluster with Terway and the NGINX Ingress add-on, written as for Alibaba Cloud.

The program is what an Alibaba user writes (pulumi-alicloud's documented `cs.ManagedKubernetes` and `cs.NodePool`
examples, with Terway's pod vSwitch); nothing in it knows about acklab. `make ack-up` runs it against acklab's
`alicloud` plugin (named in Pulumi.yaml), then applies `k8s/` with the exported kubeconfig. See README.md.
"""

import pulumi
import pulumi_alicloud as alicloud

config = pulumi.Config()
name = config.get("name") or "ack-lab"
desired_size = config.get_int("desiredSize") or 2

zones = alicloud.get_zones(available_resource_creation="VSwitch")
zone_id = zones.zones[0].id

vpc = alicloud.vpc.Network("vpc", vpc_name=name, cidr_block="10.4.0.0/16")
# Terway: nodes in one vSwitch, pods take secondary addresses of ENIs in another (ACK's advice: a larger one)
vswitch = alicloud.vpc.Switch("vswitch", vswitch_name=name, cidr_block="10.4.0.0/24", vpc_id=vpc.id,
                              zone_id=zone_id)
pod_vswitch = alicloud.vpc.Switch("pod-vswitch", vswitch_name=f"{name}-pods", cidr_block="10.4.32.0/20",
                                  vpc_id=vpc.id, zone_id=zone_id)

# The nodes' security group (ACK makes one when none is given; a group of your own is what you can reason about):
# everything from inside the VPC (nodes, pods, the API server), the NodePorts the SLBs of LoadBalancer Services
# forward to (tcp listeners keep the client's address), and SLB health checks, which come from 100.64.0.0/10.
group = alicloud.ecs.SecurityGroup("nodes", security_group_name=f"{name}-nodes", vpc_id=vpc.id,
                                   inner_access_policy="Accept")
rules = {
    "from-vpc": {"ip_protocol": "all", "port_range": "-1/-1", "cidr_ip": "10.4.0.0/16"},
    "nodeports": {"ip_protocol": "tcp", "port_range": "30000/32767", "cidr_ip": "0.0.0.0/0"},
    "slb-health-checks": {"ip_protocol": "tcp", "port_range": "1/65535", "cidr_ip": "100.64.0.0/10"},
}
for priority, (rule, args) in enumerate(rules.items(), start=1):
    alicloud.ecs.SecurityGroupRule(rule, security_group_id=group.id, type="ingress", policy="accept",
                                   priority=priority, **args)

k8s = alicloud.cs.ManagedKubernetes(
    "k8s",
    name_prefix=name,
    cluster_spec="ack.pro.small",
    worker_vswitch_ids=[vswitch.id],
    pod_vswitch_ids=[pod_vswitch.id],
    security_group_id=group.id,
    service_cidr="172.21.0.0/20",
    new_nat_gateway=True,  # the SDK's default, as ACK: a NAT gateway, its EIP, SNAT for the node and pod vSwitches
    slb_internet_enabled=False,
    proxy_mode="ipvs",  # the SDK's default; the lab's kernel has no IPVS: kube-proxy runs in iptables mode (warning)
    addons=[
        {"name": "terway-eniip"},
        {"name": "nginx-ingress-controller", "config": '{"IngressSlbNetworkType":"internet"}'},
        {"name": "csi-plugin"},  # accepted and ignored by the lab, with a warning
    ],
)

pool = alicloud.cs.NodePool(
    "default",
    node_pool_name="default",
    cluster_id=k8s.id,
    vswitch_ids=[vswitch.id],
    instance_types=["ecs.g7.large"],
    system_disk_category="cloud_essd",
    system_disk_size=40,
    desired_size=desired_size,
    labels=[{"key": "pool", "value": "default"}],
)

# Read through the pool, so the kubeconfig is asked for once the nodes are Ready
credential = alicloud.cs.get_cluster_credential_output(cluster_id=pool.cluster_id)

pulumi.export("cluster_id", k8s.id)
pulumi.export("api_server_intranet", k8s.connections[0].api_server_intranet)
pulumi.export("nat_gateway_id", k8s.nat_gateway_id)
pulumi.export("kubeconfig", pulumi.Output.secret(credential.kube_config))
