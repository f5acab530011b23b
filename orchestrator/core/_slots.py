"""A pool's slots shared by several daemons: how many each may hold.

Pure: the store's balance transaction (``store._members.Membership.balance``) calls
``limit_of`` for one pool with what every live daemon holds and wants, while it holds
that pool's row, and writes the grant back in the same transaction; the daemon's ready
queue then counts against the limit.

Rules:
1. A daemon's want is the slots its running tries hold plus those its waiting tries
   need. Its grant, as stored, is what it may hold: the grants of the live daemons
   never add up to more than the pool's slots, because a grant grows only into slots
   no other daemon's grant covers (the room).
2. Fair shares: the slots are shared out by water-filling the wants (each daemon gets
   its want or an equal level, whichever is less; a level's remainder goes to the
   first daemons in epoch order); slots nobody wants are shared out equally between
   all the live daemons, so one alone holds the whole pool and starts its tries
   without asking first.
3. Nothing running is stopped to make room: the limit (what the daemon may start up
   to) can fall below what its tries hold, and its grant is then what they hold,
   shrinking as they end, until it reaches the limit.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["Claim", "fair_shares", "limit_of"]

Claim = tuple[int, int]  # (granted, wanted) of one daemon, as last stored


def fair_shares(slots: int, wants: Mapping[int, int]) -> dict[int, int]:
    """Each daemon's share of ``slots`` for its want (rule 2), by epoch."""
    shares = dict.fromkeys(wants, 0)
    left = max(0, slots)
    open_ = sorted(epoch for epoch, want in wants.items() if want > 0)
    while left > 0 and open_:
        level = left // len(open_)
        if level == 0:
            for epoch in open_[:left]:
                shares[epoch] += 1
            left = 0
            break
        still = []
        for epoch in open_:
            take = min(level, wants[epoch] - shares[epoch])
            shares[epoch] += take
            left -= take
            if shares[epoch] < wants[epoch]:
                still.append(epoch)
        open_ = still
    everyone = sorted(wants)
    if left > 0 and everyone:  # slots nobody wants: an equal part each
        part, extra = divmod(left, len(everyone))
        for i, epoch in enumerate(everyone):
            shares[epoch] += part + (1 if i < extra else 0)
    return shares


def limit_of(
    slots: int, me: int, used: int, wanted: int, others: Mapping[int, Claim]
) -> tuple[int, int]:
    """This daemon's limit and grant (rules 1 and 3), from the claims of the others."""
    wants = {epoch: want for epoch, (_, want) in others.items()}
    wants[me] = wanted
    share = fair_shares(slots, wants)[me]
    room = slots - sum(granted for granted, _ in others.values())
    limit = max(0, min(share, room))
    return limit, max(used, limit)
