"""The fault-injection suite: the functions against real servers, with crashes, outages and fuzz.

``python -m local_stack faults`` (``make faults``; :mod:`local_stack.faults.suite`) starts Tansu,
Azurite and MariaDB in-process (:class:`local_stack.cmd_servers.StackServers`), runs the functions
as a child process (``python -m local_stack functions``, :class:`local_stack.cmd_functions.FunctionsProcess`)
and the ingestor's replay of a recorded trade file, and per scenario
(:mod:`local_stack.faults.scenarios`: ``baseline``, ``kill``, ``storage-outage``, ``broker-freeze``,
``fuzz``) injects its fault. It then reads the predictions and dead-letter hubs whole and the history
store, and compares them with what the valid trades must give (:mod:`local_stack.faults.expected`,
:mod:`local_stack.faults.report`): missing, duplicated and wrong bars and predictions, dead letters
by reason, fuzzed messages not accounted for (:mod:`local_stack.faults.fuzz`), the worst prediction
latency and the longest gap between predictions. Results: a markdown table on stdout,
``reports/faults.json`` and ``reports/faults.md``.
"""
