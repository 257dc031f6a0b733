"""acklab's cloud on the Linux kernel: Alibaba Cloud's VPC, ECS and SLB objects as namespaces, links and rules.

``netns.model`` holds the pure rules (addressing, names, security groups, SLB), ``netns.realize`` turns cloud
objects into kernel objects, ``netns.kernel`` is the kernel primitives. Programs use the real pulumi-alicloud SDK
(``import pulumi_alicloud as alicloud``); acklab's ``alicloud`` provider plugin (``acklab/provider``) calls
``netns.realize``.
"""
