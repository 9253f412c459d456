"""The embedded local runtime: pods as network namespaces on one machine (`local.py`: LocalRuntime,
`cleanup_leftovers`; `daemon.py`: the runtime process). Import the modules themselves: importing
`gossamer.runtime.types` stays cheap."""
