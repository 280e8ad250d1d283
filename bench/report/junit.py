"""junit.xml: one testcase per verdict, so a CI system shows each check and subject."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

from talbench.bench.model import RunRecord, Status


def dumps(record: RunRecord) -> str:
    verdicts = record.verdicts
    failures = sum(1 for v in verdicts if v.status is Status.FAIL)
    errors = sum(1 for v in verdicts if v.status in (Status.NO_DATA, Status.INVALID))
    suite = ET.Element(
        "testsuite",
        name=f"talbench.{record.scenario.name}",
        tests=str(len(verdicts)),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        time=f"{record.ended - record.started:.3f}",
        timestamp=_iso(record.started),
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (("run_id", record.run_id), ("target", record.target), ("quick", str(record.quick).lower())):
        ET.SubElement(properties, "property", name=name, value=value)
    for v in verdicts:
        case = ET.SubElement(
            suite, "testcase", classname=f"{record.scenario.name}.{v.check}", name=str(v.subject), time="0"
        )
        text = f"{v.status.value}: {v.message}" + (f" [{v.detail}]" if v.detail else "") + f"\nsource: {v.source}"
        if v.context:
            text += f"\nhost: {v.context}"
        if v.status is Status.FAIL:
            ET.SubElement(case, "failure", message=f"{v.check} {v.subject}: {v.message}", type="fail").text = text
        elif v.status in (Status.NO_DATA, Status.INVALID):
            ET.SubElement(
                case, "error", message=f"{v.check} {v.subject}: {v.status.value}: {v.message}", type=v.status.value
            ).text = text
        else:
            ET.SubElement(case, "system-out").text = text
    suites = ET.Element(
        "testsuites", name="talbench", tests=str(len(verdicts)), failures=str(failures), errors=str(errors)
    )
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
