"""File-level import cycles in a Rust crate: which files import (use crate::…, super::…, or a
crate:: path in code) a file that imports them back, directly or around a loop. Items a
module re-exports (`pub use`) count as the file that defines them. Comments are ignored.

    python3 .ci/import-cycles.py crates/kd-core/src [more src dirs…]

Prints each cycle with its edges; exits 1 if there is one.
"""
import re, os, sys


def cycles(root):
    files={}
    for dp,dn,fn in os.walk(root):
        for f in fn:
            if f.endswith('.rs'):
                p=os.path.join(dp,f); rel=os.path.relpath(p,root)
                mod=rel[:-3].replace('/mod','').replace('/','::')
                if mod=='lib' or mod=='main': mod=''
                files[mod]='\n'.join(l for l in open(p).read().split('\n') if not l.strip().startswith('//'))
    # map re-exported item -> module from lib.rs and mod.rs `pub use module::{...}`
    exports={}
    for mod,src in files.items():
        for m in re.finditer(r'pub(?:\([a-z]+\))? use (?:self::)?([a-z_:]+)::\{([^}]*)\}',src):
            for it in re.split(r'[,\s]+',m.group(2)):
                it=it.split(' as ')[-1].strip()
                if it: exports[(mod,it)]=(mod+'::' if mod else '')+m.group(1)
        for m in re.finditer(r'pub(?:\([a-z]+\))? use (?:self::)?([a-z_:]+)::([A-Za-z_0-9]+);',src):
            exports[(mod,m.group(2))]=(mod+'::' if mod else '')+m.group(1)
    def resolve(path):
        # path like a::b::Item ; returns module file
        parts=path.split('::')
        for i in range(len(parts),0,-1):
            cand='::'.join(parts[:i])
            if cand in files: 
                # item re-exported from that module?
                if i<len(parts) and (cand,parts[i]) in exports:
                    return resolve(exports[(cand,parts[i])]+'::'+'::'.join(parts[i+1:]) if i+1<len(parts) else exports[(cand,parts[i])])
                return cand
        if (('',parts[0]) in exports): 
            return resolve(exports[('',parts[0])])
        return None
    edges={m:set() for m in files}
    for mod,src in files.items():
        parent='::'.join(mod.split('::')[:-1])
        src=re.sub(r'\bsuper::', 'crate::'+(parent+'::' if parent else ''), src)
        # expand use crate::{a, b::{c,d}} roughly
        for m in re.finditer(r'crate::((?:[A-Za-z_0-9]+::)*)(\{[^;]*?\}(?=;)|[A-Za-z_0-9]+)',src):
            pre0=m.group(1); body=m.group(2)
            items=[]
            if body.startswith('{'):
                # flatten nested
                def expand(prefix, s):
                    out=[];depth=0;cur=''
                    s=s.strip()[1:-1]
                    parts=[];
                    for ch in s:
                        if ch=='{':depth+=1
                        if ch=='}':depth-=1
                        if ch==',' and depth==0: parts.append(cur);cur=''
                        else: cur+=ch
                    parts.append(cur)
                    for p in parts:
                        p=p.strip()
                        if not p: continue
                        if '{' in p:
                            pre=p[:p.index('{')].rstrip(':')
                            out+=expand(prefix+pre+'::', p[p.index('{'):])
                        else: out.append(prefix+p.split(' as ')[0])
                    return out
                items=expand(pre0,body)
            else: items=[pre0+body]
            for it in items:
                it=it.rstrip(':')
                t=resolve(it)
                if t is not None and t!=mod and t!='': edges[mod].add(t)
    # find cycles (SCCs)
    index={};low={};st=[];on=set();res=[];c=[0]
    sys.setrecursionlimit(10000)
    def sc(v):
        index[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
        for w in edges[v]:
            if w not in index: sc(w);low[v]=min(low[v],low[w])
            elif w in on: low[v]=min(low[v],index[w])
        if low[v]==index[v]:
            comp=[]
            while True:
                w=st.pop();on.discard(w);comp.append(w)
                if w==v:break
            if len(comp)>1: res.append(comp)
    for v in edges:
        if v not in index: sc(v)
    return [(comp, {a: sorted(x for x in edges[a] if x in comp) for a in comp}) for comp in res]


if __name__ == "__main__":
    found = False
    for root in sys.argv[1:]:
        for comp, edges in cycles(root):
            found = True
            print(f"{root}: import cycle between {', '.join(sorted(comp))}")
            for a, targets in sorted(edges.items()):
                print(f"    {a} -> {', '.join(targets)}")
    sys.exit(1 if found else 0)
