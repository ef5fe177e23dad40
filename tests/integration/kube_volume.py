"""A ConfigMap or Secret volume as the kubelet writes it: each file `NAME -> ..data/NAME`,
`..data -> ..<timestamp>`; an update writes a new timestamped directory, points
`..data_tmp` at it, renames that over `..data` and removes the old directory."""
import os
import shutil


class AtomicVolume:
    def __init__(self, root, name="sluice.yaml"):
        self.root = root
        os.makedirs(root)
        self.path = os.path.join(root, name)  # the file write() replaces
        self.version = 0

    def write(self, text):
        """Replaces the one file at self.path (the harness's config_file protocol)."""
        self.write_files({os.path.basename(self.path): text})

    def write_files(self, files):
        """Replaces the volume's whole content with `files`, {name: text or bytes}."""
        self.version += 1
        new = "..2026_12_07_22_00_00.%06d" % self.version
        os.mkdir(os.path.join(self.root, new))
        for name, content in files.items():
            with open(os.path.join(self.root, new, name), "wb" if isinstance(content, bytes)
                      else "w") as f:
                f.write(content)
        data = os.path.join(self.root, "..data")
        old = os.readlink(data) if os.path.islink(data) else None
        os.symlink(new, os.path.join(self.root, "..data_tmp"))
        os.rename(os.path.join(self.root, "..data_tmp"), data)
        for name in files:
            link = os.path.join(self.root, name)
            if not os.path.islink(link):
                os.symlink(os.path.join("..data", name), link)
        if old:
            shutil.rmtree(os.path.join(self.root, old))
