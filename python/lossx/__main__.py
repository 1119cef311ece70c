"""python -m lossx info : build and runtime facts as JSON."""
import json
import sys

import lossx


def main(argv):
    if len(argv) < 1 or argv[0] != "info":
        print("usage: python -m lossx info", file=sys.stderr)
        return 2
    print(json.dumps(lossx.info(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
