"""What a `reproduce` stage did in one call: reproduce.json's "stage_status" (and the why in "stage_note")."""
from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """What a stage did, as reproduce.json's "stage_status" records it; the why or the where is in "stage_note"."""
    DONE = "done"  # ran (or finished) in this call; its wall time is this call's
    FINISHED = "already finished"  # found finished by this call, no earlier measurement of its time
    DONE_EARLIER = "done in an earlier call"  # its wall time is that call's (stage_note: that call's git SHA)
    DONE_IN_PARTS = "done in earlier calls"  # its wall time is the sum of its per-seed runs' recorded wall times
    NOT_RUN = "not run"  # stage_note says why (no data, no snapshots, ...)

    @classmethod
    def read(cls, text) -> tuple["Status", str]:
        """(status, note) of a stage_status value; a reproduce.json written before the enum held the note in the
        text ("done in an earlier call (87d02d757714)", "not run: no data"), so the known prefix is kept."""
        for st in sorted(cls, key=lambda m: -len(m.value)):
            if str(text).startswith(st.value):
                return st, str(text)[len(st.value):].strip(" :()")
        return cls.NOT_RUN, str(text)

    def __str__(self) -> str:  # the text, in messages and f-strings alike (a str Enum shows its name otherwise)
        return self.value

    __format__ = str.__format__


def not_run(why: str) -> tuple[Status, str]:
    """A stage's outcome when it could not run, with the reason the report shows."""
    return Status.NOT_RUN, why
