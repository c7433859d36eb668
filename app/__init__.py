"""The komrade desktop app (KivyMD 2.0). It owns no protocol code: it starts (or finds) the user's node and talks
to it only through ``komrade_dht.api`` (``ApiClient`` and its event stream). See ``app/README`` in the main
README's "The app" section for how the parts fit.
"""
