"""The embedded broker: kombu's filesystem transport with an atomic publish and an atomic take.

kombu's own filesystem transport creates a message file and only then locks and writes it; a
consumer listing the folder in between reads an empty file and its `json.loads` fails inside
kombu, which ends the worker's consumer. The default one-second polling interval made that
rare; it also made every change wait up to a second for the worker's next look. Here:

- a message is written under a name no consumer looks at (a leading dot) and renamed to its
  final name when complete (`os.replace`, atomic on one file system): a consumer sees all of a
  message or nothing of it;
- a consumer takes a message by renaming it, in the same folder, to a name of its own; only one
  rename can succeed, so two workers never both take it, and a message whose rename failed was
  taken by another (it is skipped, not an error);
- the folder is polled every 50 ms (`POLLING_INTERVAL`, overridable with the transport option
  `polling_interval`): a listing of a folder of a few files costs microseconds.

A consumer killed between its take and its read leaves a `.taken-` file behind: that message is
lost to the broker, as it was with kombu's transport (which moved it to a temporary folder). For
the sync tasks nothing is lost: the outbox row stays until a push succeeds, and the sweep
queues it again.

Selected with the setting `CELERY_BROKER_TRANSPORT = "portal.broker:Transport"` (the URL stays
`filesystem://`); folders and options as for kombu's transport.
"""

import contextlib
import os
import uuid
from queue import Empty
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

POLLING_INTERVAL = 0.05
_PARTIAL = ".part-"  # a message still being written
_TAKEN = ".taken-"  # a message a consumer has taken and is reading


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, _PARTIAL + name)
        try:
            with open(partial, "xb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            _remove_quietly(partial)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue):
        wanted = f"{queue}.msg"
        folder = self.data_folder_in
        for name in sorted(os.listdir(folder)):
            if name.startswith(".") or name.partition(".")[2] != wanted:
                continue
            taken = os.path.join(folder, f"{_TAKEN}{uuid.uuid4().hex}-{name}")
            try:
                os.rename(os.path.join(folder, name), taken)
            except FileNotFoundError:  # another consumer took it first
                continue
            try:
                with open(taken, "rb") as f:
                    payload = f.read()
                if self.store_processed:
                    os.replace(taken, os.path.join(self.processed_folder, name))
                else:
                    os.remove(taken)
            except OSError as exc:
                raise ChannelError(f"Cannot read file {taken!r} from queue.") from exc
            return loads(bytes_to_str(payload))
        raise Empty()


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


class Transport(filesystem.Transport):
    Channel = Channel
    polling_interval = POLLING_INTERVAL
