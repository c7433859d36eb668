"""The komrade desktop app (KivyMD 2.0). It owns no protocol code: it starts (or finds) the user's node and talks
to it only through ``komrade_dht.api`` (``ApiClient`` and its event stream). The README's "The app" section says
how the parts fit; ``python -m app`` runs it.
"""
