"""Prints N JSON documents of about SIZE bytes, one per line, like application events: a few
fixed fields, ids and words drawn from a small vocabulary with a fixed seed. Compressible the way
real JSON is (a few times), unlike repeated text (hundreds of times) or random bytes (not at all).

usage: json_lines.py N [SIZE]
"""
import json
import random
import sys

WORDS = ("order customer item price quantity shipped pending cancelled warehouse region north "
         "south east west priority standard express invoice payment card refund coupon cart "
         "session mobile desktop browser search click view checkout returned damaged").split()


def main(n, size):
    rnd = random.Random(12)
    for i in range(n):
        doc = {"id": i, "ts": 1_700_000_000_000 + i * 37, "user": f"user-{rnd.randrange(50_000):05d}",
               "session": "%032x" % rnd.getrandbits(128), "event": rnd.choice(WORDS),
               "amount": round(rnd.uniform(1, 500), 2), "tags": rnd.sample(WORDS, 3), "note": ""}
        length = len(json.dumps(doc))
        note = []
        while length < size:
            note.append(rnd.choice(WORDS) if rnd.random() < 0.8 else "%08x" % rnd.getrandbits(32))
            length += len(note[-1]) + 1
        doc["note"] = " ".join(note)
        print(json.dumps(doc))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 1024)
