"""The profile's size limit (``limits.zip_mb``): checked before anything costly, and again
on the written zip.

Step 3 of ``leafsub build`` (see build.py) estimates the zip from the files to be
stored and the compression policy, switches ``auto`` to ``deflate`` when only that fits,
and otherwise fails with the largest contributors and the remedies (CheckFailed, exit 1).
"""

import dataclasses
import os

import numpy as np

from ..errors import CheckFailed
from ..evaluator.checks import Check
from . import zipwrite

MB = 1_000_000
SMALL_FILES_ALLOWANCE = 64 * 1024   # manifest + model.py, for the size pre-check


def mb(n):
    return "%.1f MB" % (n / MB) if n >= 100_000 else "%.2f MB" % (n / MB)


def expected_size(members, profile, combine_path, compression, limit, notes, checks):
    """The zip's expected size under ``compression``, checked against ``limit`` (bytes).

    Sets every member's ``bytes`` (its files) and ``estimate`` (their share of the zip).

    Returns:
      ``(effective compression policy, estimated zip bytes, model files' bytes)``.

    Raises:
      CheckFailed (exit 1) when even the best policy leaves the zip above the limit.
    """
    model_entries = [zipwrite.dir_entry(m.dir) for m in members]
    for m in members:
        for rel, path, digest in m.files:
            arcname = m.dir + "/" + rel
            model_entries.append(zipwrite.dir_entry(arcname) if digest is None
                                 else zipwrite.file_entry(arcname, path))
    probe_count = int(members[0].card["probe"]["count"])
    # model.py, the manifest, the probe batch (integer-valued float32: deflates to about half)
    # and a user combiner: estimated generously, checked exactly once the zip is written.
    own_bytes = SMALL_FILES_ALLOWANCE + probe_count * int(np.prod(profile["input"]["shape"])) * 4 + (
        os.path.getsize(combine_path) if combine_path else 0)

    def estimate_with(policy):
        planned = zipwrite.plan([dataclasses.replace(e) for e in model_entries], policy)
        per_member = [sum(e.estimate for e in planned if e.name.startswith(m.dir + "/"))
                      for m in members]
        return planned, per_member, sum(per_member) + own_bytes + 100 * len(planned)

    planned, per_member, estimate = estimate_with(compression)
    effective = compression
    if estimate > limit and compression == "auto":
        _, deflated_members, deflated = estimate_with("deflate")
        if deflated <= limit:
            notes.append("compression auto: deflating every file to fit under the %s limit "
                         "(about %s instead of %s)" % (mb(limit), mb(deflated), mb(estimate)))
            effective, per_member, estimate = "deflate", deflated_members, deflated
    for m, size in zip(members, per_member):
        m.bytes = sum(e.size for e in planned if e.name.startswith(m.dir + "/"))
        m.estimate = size
    if estimate > limit:
        contributors = [("%s (%s)" % (m.dir, m.given), m.estimate) for m in members]
        contributors.append(("model.py + manifest + probe", own_bytes))
        saving = 0
        if effective != "deflate":
            saving = max(0, estimate - estimate_with("deflate")[2])
        checks.append(Check("size", "fail", "about %s expected, limit %s"
                            % (mb(estimate), mb(limit))))
        raise size_error(profile, estimate, limit, contributors, members, effective, saving,
                         actual=False)
    raw_total = sum(m.bytes for m in members)
    return effective, estimate, raw_total


def size_error(profile, total, limit, contributors, members, compression, deflate_saving,
               actual):
    what = "is" if actual else "would be about"
    top = sorted(contributors, key=lambda c: -c[1])[:3]
    remedies = []
    biggest = max(contributors[:len(members)], key=lambda c: c[1])[0]
    if len(members) > 1:
        remedies.append("drop a member (the ensemble has %d; %s is the largest)"
                        % (len(members), biggest))
    remedies.append("use a smaller architecture or input size for the largest member")
    remedies.append("export a float16 copy of the weights (halves their size; check the "
                    "accuracy after)")
    if compression != "deflate" and deflate_saving > 0.01 * total and not actual:
        remedies.append("--compression deflate (saves about %s here)" % mb(deflate_saving))
    remedies.append("if your challenge allows more, set limits.zip_mb in your own profile "
                    "(--profile path.json); TTA and the combiner do not change the size")
    return CheckFailed(
        "The submission %s %s, above profile %s's limit of %s (limits.zip_mb); no zip was written. "
        "Largest contributors: %s. Remedies: %s." % (
            what, mb(total), profile["name"], mb(limit),
            ", ".join("%s %s" % (name, mb(size)) for name, size in top), "; ".join(remedies)))
