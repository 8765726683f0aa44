"""``pacs modality add|list|remove``: the DICOM nodes enrolled to talk to the archive."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from pacs.cli.common import EXIT_OK, Subcommands, actor, add_command, add_group, opened
from pacs.core.nodes import NodeRegistry, phi_grant
from pacs.ops import enrolment


def _git_work_tree(path: Path) -> Path | None:
    """The git work tree (a folder holding ``.git``) that `path` lies in, if any."""
    for folder in (path.resolve(), *path.resolve().parents):
        if (folder / ".git").exists():
            return folder
    return None


def cmd_modality_add(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Enrol a modality or workstation."""
    out = Path(args.issue_cert) if args.issue_cert else None
    with opened(args, environ) as pacs:
        settings = pacs.settings
        node = enrolment.enrol(
            pacs,
            args.ae_title,
            host=args.host,
            allow=args.allow,
            port=args.port,
            certificate=enrolment.IssueInto(out) if out else enrolment.PinFile(Path(args.cert)),
            authority=enrolment.operator(actor()),
            plaintext=args.plaintext,
        ).node
    print(f"enrolled {node.ae_title} from {node.network}, may {','.join(sorted(node.permissions))}")
    if granted := phi_grant(node.permissions):
        print(
            f"  PHI grant: {','.join(granted)} lets {node.ae_title} read every patient's data "
            "(audited; listed by pacs selfcheck)"
        )
    if out:
        print(f"  certificate: {out / 'client.crt'}, key: {out / 'client.key'}, CA: {out / 'ca.crt'}")
        print(
            f"  test it: TCP_NODELAY=1 echoscu +tls {out / 'client.key'} {out / 'client.crt'} "
            f"+cf {out / 'ca.crt'} -aec {settings.dicom.ae_title} -aet {node.ae_title} "
            f"{settings.server.hostname} {settings.dicom.port}"
        )
        if tree := _git_work_tree(out):
            print(
                f"  WARNING: {out} is inside the git work tree {tree}: move client.key to the modality "
                "and delete it here; never commit it"
            )
    if node.plaintext:
        print(f"  WARNING: {node.ae_title} uses UNENCRYPTED DICOM on port {settings.dicom.plaintext_port}")
    return EXIT_OK


def cmd_modality_list(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """List enrolled nodes."""
    with opened(args, environ) as pacs:
        nodes = NodeRegistry(pacs.database).all()
    print(f"{'AE title':<16}  {'address':<18}  {'port':>5}  {'may':<18}  {'certificate':<20}  transport")
    for node in nodes:
        cert = f"{'issued' if node.cert_issued else 'pinned'} {node.fingerprint[:12]}"
        transport = "PLAINTEXT" if node.plaintext else "tls"
        print(
            f"{node.ae_title:<16}  {node.network!s:<18}  {node.port or '':>5}  "
            f"{','.join(sorted(node.permissions)):<18}  {cert:<20}  {transport}"
        )
    return EXIT_OK


def cmd_modality_remove(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Remove an enrolled node."""
    with opened(args, environ) as pacs:
        node = enrolment.remove(pacs, args.ae_title, user=actor())
    print(f"removed {node.ae_title}")
    return EXIT_OK


def register(commands: Subcommands) -> None:
    """Add ``pacs modality`` and its actions to the parser."""
    modality = add_group(commands, "modality", "enrol, list or remove DICOM nodes")
    add = add_command(modality, "add", cmd_modality_add, "enrol a modality or workstation")
    add.add_argument("ae_title", metavar="AE")
    add.add_argument("--host", required=True, metavar="IP|CIDR", help="address or network it connects from")
    add.add_argument("--allow", default="store", help="comma-separated: store,find,move,get (default store)")
    add.add_argument("--port", type=int, help="its own DICOM TLS port, to make it a retrieve destination")
    add.add_argument("--plaintext", action="store_true", help="legacy node without TLS (flagged, audited)")
    certificate = add.add_mutually_exclusive_group(required=True)
    certificate.add_argument(
        "--issue-cert", metavar="OUTDIR", help="issue client.crt/client.key/ca.crt into OUTDIR"
    )
    certificate.add_argument("--cert", metavar="PEMFILE", help="pin the node's own certificate")
    add_command(modality, "list", cmd_modality_list, "list enrolled nodes")
    remove = add_command(modality, "remove", cmd_modality_remove, "remove an enrolled node")
    remove.add_argument("ae_title", metavar="AE")
