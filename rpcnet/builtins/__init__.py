"""The strategies that ship inside the ``rpcnet`` package itself.

Each module here is a plugin written exactly as a third party would write one
(``@hookimpl`` functions that call ``register``), and the plugin host loads it
by name (:data:`rpcnet.plugins.BUILTIN_PLUGINS`), as it loads an entry
point: nothing in the kernel imports these modules. They are registered before every other plugin, so ``rpcnet plugins``
lists them as ``builtin-*``.
"""
