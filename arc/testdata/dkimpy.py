# SPDX-License-Identifier: Apache-2.0
"""Independent check of dualmx's ARC output with Debian's python3-dkim.

Used by TestInteropDkimpy. DNS never leaves the process: keys come from a
JSON file mapping "selector._domainkey.domain" to the TXT record.

  dkimpy.py verify KEYS.json MESSAGE...
      prints one JSON line per message:
      {"arc": cv, "arc_reason": ..., "dkim": bool}
  dkimpy.py arcsign MESSAGE KEY.pem SELECTOR DOMAIN SRV_ID TIMESTAMP
      prints the ARC set dkimpy adds, to prepend to MESSAGE
"""
import json
import sys

import dkim


def dnsfunc_from(path):
    with open(path) as f:
        records = json.load(f)

    def dnsfunc(name, timeout=5):
        key = name.decode() if isinstance(name, bytes) else name
        txt = records.get(key.rstrip("."))
        return txt.encode() if txt is not None else None

    return dnsfunc


def verify(keys_path, msg_paths):
    # One process for all messages: importing dkim is the slow part.
    dnsfunc = dnsfunc_from(keys_path)
    for path in msg_paths:
        with open(path, "rb") as f:
            msg = f.read()
        cv, _, reason = dkim.arc_verify(msg, dnsfunc=dnsfunc)
        ok = dkim.verify(msg, dnsfunc=dnsfunc)
        print(json.dumps({
            "arc": cv.decode() if isinstance(cv, bytes) else cv,
            "arc_reason": reason,
            "dkim": bool(ok),
        }))


def arcsign(msg_path, key_path, selector, domain, srv_id, timestamp):
    with open(msg_path, "rb") as f:
        msg = f.read()
    with open(key_path, "rb") as f:
        key = f.read()
    headers = dkim.arc_sign(msg, selector.encode(), domain.encode(), key,
                            srv_id.encode(), timestamp=timestamp)
    if not headers:
        sys.exit("dkimpy added no ARC set")
    sys.stdout.buffer.write(b"".join(headers))


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "verify":
        verify(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 8 and sys.argv[1] == "arcsign":
        arcsign(*sys.argv[2:])
    else:
        sys.exit(__doc__)
