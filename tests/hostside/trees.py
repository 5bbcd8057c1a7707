"""What "nothing was written" means in the agent tests: every path under a folder with its mode,
size, mtime and (regular files) sha256, symlinks never followed."""
import hashlib
import os
import stat


def tree(root, absolute=False):
    """{path: (mode, size, mtime_ns, sha256 or None)} of everything under `root` (folders too);
    paths relative to `root` unless `absolute`."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(str(root)):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            digest = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            out[p if absolute else os.path.relpath(p, str(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out
