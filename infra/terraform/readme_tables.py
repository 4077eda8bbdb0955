#!/usr/bin/env python3
"""Prints the Inputs and Outputs tables of a module README from its .tf files (the layout this
repository writes: one attribute per line). Regenerate after changing variables or outputs:

    python3 infra/terraform/readme_tables.py infra/terraform/modules/aws

and replace everything from "## Inputs" on in the README (tests/terraform.rs checks every row).
"""
import re,sys,os
def blocks(text, kind):
    out=[]
    for m in re.finditer(r'^%s "([^"]+)" \{\n(.*?)^\}' % kind, text, re.S|re.M):
        out.append((m.group(1), m.group(2)))
    return out
def field(body, key):
    m=re.search(r'^  %s\s*=\s*(.*)$' % key, body, re.M)
    if not m: return None
    v=m.group(1).strip()
    if v.endswith('(') or v.endswith('{') or v.endswith('['):
        # multi-line: gather until matching dedent
        start=m.end(); lines=[v]
        for l in body[start:].split('\n')[1:]:
            lines.append(l.strip())
            if re.match(r'^  [\)\}\]]', l): break
        v=' '.join(x for x in lines if x)
        v=re.sub(r'\s+',' ',v); v=re.sub(r'(?<=\)) (?=\w+ = )', ', ', v)
    return v
def esc(s): return s.replace('|','\\|')
mod=sys.argv[1]
vs=[];os_=[]
for f in sorted(os.listdir(mod)):
    if f.endswith('.tf'):
        t=open(os.path.join(mod,f)).read()
        vs+=blocks(t,'variable'); os_+=blocks(t,'output')
print('## Inputs\n\n| name | description | type | default |\n|---|---|---|---|')
for n,b in vs:
    d=field(b,'description').strip('"').replace('\\"','"')
    ty=field(b,'type'); de=field(b,'default')
    de='required' if de is None else '`%s`'%esc(de)
    print(f'| `{n}` | {esc(d)} | `{esc(ty)}` | {de} |')
print('\n## Outputs\n\n| name | description |\n|---|---|')
for n,b in os_:
    d=field(b,'description').strip('"').replace('\\"','"')
    s=' (sensitive)' if re.search(r'^  sensitive\s*=\s*true',b,re.M) else ''
    print(f'| `{n}` | {esc(d)}{s} |')
