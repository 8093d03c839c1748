"""What the base image's debootstrap step shows while it runs (the lock and the build: test_baselock.py)."""

from __future__ import annotations

from builder.base import Phases

# debootstrap --variant=minbase --include=python3 bookworm, abridged (the real run prints about 400 lines).
DEBOOTSTRAP = """\
I: Retrieving InRelease
I: Checking Release signature
I: Valid Release signature (key id 4D64FEC119C2029067D6E791F8D2585B8783D481)
I: Retrieving Packages
I: Validating Packages
I: Resolving dependencies of required packages...
I: Resolving dependencies of base packages...
I: Checking component main on http://deb.debian.org/debian...
I: Retrieving libacl1 2.3.1-3
I: Validating libacl1 2.3.1-3
I: Retrieving adduser 3.134
I: Validating adduser 3.134
I: Extracting libacl1...
I: Extracting adduser...
I: Installing required packages...
I: Unpacking required packages...
I: Unpacking libacl1:amd64...
I: Configuring required packages...
I: Configuring libacl1:amd64...
W: Failure trying to run: chroot "/var/tmp/x/root" mount -t proc proc /proc
I: Configuring adduser...
I: Base system installed successfully.
"""


def test_debootstrap_shows_each_phase_once_and_every_warning() -> None:
    phases = Phases()
    shown = [line for line in DEBOOTSTRAP.splitlines() if phases.new(line)]
    assert shown == [
        "I: Retrieving InRelease",
        "I: Checking Release signature",
        "I: Valid Release signature (key id 4D64FEC119C2029067D6E791F8D2585B8783D481)",
        "I: Retrieving Packages",
        "I: Resolving dependencies of required packages...",
        "I: Checking component main on http://deb.debian.org/debian...",
        "I: Retrieving libacl1 2.3.1-3",
        "I: Extracting libacl1...",
        "I: Installing required packages...",
        "I: Unpacking required packages...",
        "I: Configuring required packages...",
        'W: Failure trying to run: chroot "/var/tmp/x/root" mount -t proc proc /proc',
        "I: Base system installed successfully.",
    ]
