"""Memory of server processes: /proc figures, and the peak RSS growth of workers across a block."""
from pathlib import Path


def proc_status(pid, name):
    """Return a kB figure (VmRSS, VmHWM, RssAnon, ...) from /proc/<pid>/status, or 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss(pid):
    """Reset a process's VmHWM to its current RSS; return False where the kernel refuses."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakRss:
    """Around a block, the largest growth of any of some processes' peak RSS over its RSS before the block.

    Each peak (VmHWM) is reset first where the kernel allows; where it does not, the growth is an
    upper bound and `reset` is False. After the block: `growth_kb`, the process it grew in (`pid`),
    and that process's heap (`anon_kb`) and file-backed (`files_kb`) growth.
    """

    FIELDS = ("VmRSS", "RssAnon", "RssFile")

    def __init__(self, pids):
        self.pids = list(pids)
        self.reset, self.pid, self.growth_kb, self.anon_kb, self.files_kb = True, None, 0, 0, 0

    def __enter__(self):
        self.before = {pid: {name: proc_status(pid, name) for name in self.FIELDS} for pid in self.pids}
        self.reset = all(reset_peak_rss(pid) for pid in self.pids)
        return self

    def __exit__(self, *exc_info):
        growth = {pid: proc_status(pid, "VmHWM") - before["VmRSS"] for pid, before in self.before.items()}
        if growth:
            self.pid = max(growth, key=growth.get)
            self.growth_kb = growth[self.pid]
            self.anon_kb, self.files_kb = (proc_status(self.pid, name) - self.before[self.pid][name]
                                           for name in ("RssAnon", "RssFile"))

    def describe(self):
        """Return e.g. 'RSS +0.9 MB', marked as an upper bound where the peak could not be reset."""
        return f"RSS +{self.growth_kb / 1024:.1f} MB" + ("" if self.reset else " (peak not reset: upper bound)")
