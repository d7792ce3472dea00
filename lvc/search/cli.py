"""CLI parsers for ``lvc index`` and ``lvc search`` (thin over :mod:`lvc.search.service`)."""

from __future__ import annotations

import argparse
import json

from lvc.models.registry import ANALYSIS_MODEL_HELP
from lvc.search import service


def add_parsers(sub: argparse._SubParsersAction) -> None:
    i = sub.add_parser("index", help="maintain a latent search index (FAISS) of videos",
                       description="Segment descriptors (~1 s) from lvc's latents, kept in a FAISS index on disk.")
    isub = i.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = isub.add_parser("add", help="describe and add videos / .lvc files / folders (re-adding refreshes)")
    a.add_argument("paths", nargs="+")
    r = isub.add_parser("remove", help="remove videos (paths as listed)")
    r.add_argument("paths", nargs="+")
    isub.add_parser("list", help="list indexed videos")
    isub.add_parser("rebuild", help="recompute every descriptor (after a model change)")
    for p in isub.choices.values():
        p.add_argument("--index", required=True, help="index folder")
        p.add_argument("--model", help=ANALYSIS_MODEL_HELP)
        p.add_argument("--json", action="store_true")
    i.set_defaults(func=_index)

    s = sub.add_parser("search", help="find indexed videos similar to a video, image or .lvc file")
    s.add_argument("query")
    s.add_argument("--index", required=True)
    s.add_argument("-k", type=int, default=5, help="number of videos to return (default 5)")
    s.add_argument("--model", help=ANALYSIS_MODEL_HELP)
    s.add_argument("--no-flip", action="store_true", help="do not also try the mirrored query")
    s.add_argument("--json", action="store_true", help="print a JSON list, best first")
    s.set_defaults(func=_search)


def _index(args: argparse.Namespace) -> int:
    if args.action == "add":
        done = service.index_add(args.paths, args.index, args.model)
        result = {"added": done}
    elif args.action == "remove":
        result = {"removed": service.index_remove(args.paths, args.index)}
    elif args.action == "rebuild":
        result = {"rebuilt": service.index_rebuild(args.index, args.model)}
    else:
        result = {"videos": service.index_list(args.index)}
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.action == "list":
        for v in result["videos"]:
            print(f"{v['duration']:9.2f} s  {v['segments']:6d} segments  {v['path']}")
    else:
        (key, paths), = result.items()
        print(f"{key} {len(paths)} video(s) in {args.index}")
    return 0


def _search(args: argparse.Namespace) -> int:
    matches = service.search(args.index, args.query, args.k, args.model, flip=not args.no_flip)
    if args.json:
        print(json.dumps([m.to_dict() for m in matches], indent=2))
    else:
        for rank, m in enumerate(matches, 1):
            mirrored = '  (mirrored)' if m.flipped else ''
            print(f"{rank}. {m.score:.4f}  {m.start:8.2f}-{m.end:8.2f} s  {m.path}{mirrored}")
    return 0
