#!/usr/bin/env python3
"""Summarises a critest (ginkgo v2) JUnit report: counts, then each failed spec and its error.

    summary.py JUNIT_XML [--full]     (--full: the whole failure text, not its first lines)
"""
import sys
import xml.etree.ElementTree as ET


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    full = '--full' in sys.argv[2:]
    root = ET.parse(sys.argv[1]).getroot()
    passed, failed, skipped = [], [], []
    for tc in root.iter('testcase'):
        name = tc.get('name', '')
        if name.startswith('[BeforeSuite]') or name.startswith('[AfterSuite]') or name.startswith('[SynchronizedBeforeSuite]'):
            if tc.find('failure') is None and tc.find('error') is None:
                continue
        status = tc.get('status', '')
        fail = tc.find('failure')
        if fail is None:
            fail = tc.find('error')
        if fail is not None:
            failed.append((name, (fail.get('message') or '') + '\n' + (fail.text or '')))
        elif tc.find('skipped') is not None or status == 'skipped':
            skipped.append(name)
        else:
            passed.append(name)
    ran = len(passed) + len(failed)
    print('ran %d specs: %d passed, %d failed; %d skipped' % (ran, len(passed), len(failed), len(skipped)))
    for name, text in failed:
        lines = [l.rstrip() for l in text.strip().splitlines() if l.strip()]
        print('FAIL: %s' % name)
        for l in (lines if full else lines[:3]):
            print('      %s' % l[:300])
    return 0


if __name__ == '__main__':
    sys.exit(main())
