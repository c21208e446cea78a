"""Namespace labs: a throw-away Ethernet segment, daemons on it, and the demo.

:mod:`~pyucarp.lab.netlab` builds the segment (hosts, bridge, capture, probing),
:mod:`~pyucarp.lab.helper` is its side inside a namespace, :mod:`~pyucarp.lab.daemons`
starts pyucarp or the C ucarp on a host and reads them, :mod:`~pyucarp.lab.demo` tells
a failover story with them. Nothing beyond the standard library and pyucarp itself;
building a lab needs root.
"""
