"""Parses an OpenMetrics exposition (stdin) with prometheus_client's strict
parser, which rejects the whole text on any error (a family name used twice,
a counter sample without `_total`, a missing `# EOF`), and prints one line per
sample: `NAME{LABELS} VALUE`."""
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
        print(f"{sample.name}{{{labels}}} {sample.value}")
