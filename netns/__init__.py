"""acklab's local cloud provider: Alibaba Cloud VPC/ECS resources realized on the Linux kernel.

Use it like pulumi-alicloud: ``from netns import vpc, ecs``.
"""
