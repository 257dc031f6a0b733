"""Connection plugin: run tasks inside an acklab ECS / node network namespace on this machine."""

from __future__ import annotations

DOCUMENTATION = r"""
name: netns
short_description: Run tasks inside a named network namespace of an acklab lab
description:
  - Like the local connection, but every command runs under C(nsenter --net=/run/netns/NAME), so the task sees
    the namespace's interfaces, routes and sockets while it keeps the host's file system and mounts
    (C(/run/netns) included, so namespaces it creates stay visible to the rest of the lab).
  - Only namespaces carrying an acklab mark (C(acklab-)) are accepted, so a task can never run in the host's
    own network namespace by mistake.
author: acklab
version_added: 0.1.0
options:
  netns:
    description: The network namespace (C(/run/netns/NAME)) to run in.
    type: str
    required: true
    vars:
      - name: acklab_netns
"""

import os
import shlex

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.connection.local import Connection as LocalConnection


class Connection(LocalConnection):
    transport = "acklab.lab.netns"

    def _netns(self) -> str:
        name = self.get_option("netns")
        if not name or not name.startswith("acklab-") or "/" in name:
            raise AnsibleConnectionFailure(f"acklab.lab.netns: {name!r} is not an acklab namespace")
        if not os.path.exists(f"/run/netns/{name}"):
            raise AnsibleConnectionFailure(f"acklab.lab.netns: namespace {name} does not exist")
        return name

    def exec_command(self, cmd, in_data=None, sudoable=True):
        wrapped = f"nsenter --net=/run/netns/{self._netns()} -- /bin/sh -c {shlex.quote(cmd)}"
        return super().exec_command(wrapped, in_data=in_data, sudoable=sudoable)
