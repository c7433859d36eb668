"""Gossip flooding and anti-entropy (the "dust cloud"): not built yet; see issue 3 and DESIGN.md, "Gossip".

Until then an envelope lives on the k nodes closest to its slot and to its id, and newcomers closer than us
receive the slots we hold (``KomradeProtocol._hand_off``).
"""
