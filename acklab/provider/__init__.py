"""acklab as the ``alicloud`` resource provider plugin: real pulumi-alicloud programs, realized on the kernel.

A thin adapter between the engine and ``netns/realize``: ``server`` speaks Pulumi's ResourceProvider protocol,
``sdk`` reads argument and output names from the pinned SDK, one module per SDK module (``vpc``, ``ecs``, ``slb``;
``index`` for the top-level data sources) maps the SDK's resources onto realizations (validating with
``netns/model``) and answers its data sources from the kernel, the plugin's ``records`` and the lab's ``catalog``;
``table`` writes docs/provider.md's tables from them. See docs/provider.md.
"""
