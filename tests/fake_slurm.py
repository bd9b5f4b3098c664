"""A stand-in for SLURM's ``sbatch``, ``srun`` and ``sacct`` on one machine, for tests of ``hydra/launcher=slurm``.

- ``sbatch SCRIPT`` starts every task of the submitted job array at once, in the background, with the
  environment SLURM gives a batch job (job and array ids, job name, task and node counts, node list),
  and prints ``Submitted batch job N`` as SLURM does;
- ``srun [--unbuffered] [--output F] [--error F] CMD...`` starts the job's ``SLURM_NTASKS`` processes
  (``SLURM_PROCID``/``SLURM_LOCALID`` 0..n-1) with their output files (``%A %a %j %t`` filled in) and
  waits for them;
- ``sacct`` reports each finished job as COMPLETED or FAILED by its batch script's exit status (a job
  that exits without a result, e.g. on a user error, would otherwise be waited for forever).

Usage: ``python fake_slurm.py install DIR`` writes the commands into DIR (put it first on PATH); the
job states are kept in ``DIR/states``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def sbatch(script: str) -> None:
    text = Path(script).read_text()
    opts = dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", text, flags=re.M))
    job = 1000 + os.getpid() % 9000
    span = opts.get("array", "").split("%")[0]
    indices = range(int(span.split("-")[0]), int(span.split("-")[-1]) + 1) if span else [None]
    per_node, nodes = int(opts.get("ntasks-per-node", 1)), int(opts.get("nodes", 1))
    for index in indices:
        job_id = job if index is None else job + 1 + index
        env = {**os.environ, "SLURM_JOB_ID": str(job_id), "SLURM_JOB_NAME": opts.get("job-name", "sbatch"),
               "SLURM_NTASKS": str(per_node * nodes), "SLURM_NTASKS_PER_NODE": str(per_node),
               "SLURM_JOB_NUM_NODES": str(nodes), "SLURM_NNODES": str(nodes), "SLURM_NODEID": "0",
               "SLURM_JOB_NODELIST": "localhost", "SLURM_NODELIST": "localhost", "SLURM_SUBMIT_DIR": os.getcwd()}
        if index is not None:
            env |= {"SLURM_ARRAY_JOB_ID": str(job), "SLURM_ARRAY_TASK_ID": str(index)}
        name = str(job) if index is None else f"{job}_{index}"
        record = f'bash "{script}"; echo "{name} $?" >> "{os.environ["FAKE_SLURM_DIR"]}/states"'
        subprocess.Popen(["bash", "-c", record], env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"Submitted batch job {job}")


def fill(pattern: str, rank: int) -> Path:
    env = os.environ
    array_job, task = env.get("SLURM_ARRAY_JOB_ID", env["SLURM_JOB_ID"]), env.get("SLURM_ARRAY_TASK_ID", "0")
    path = Path(pattern.replace("%A", array_job).replace("%a", task).replace("%j", env["SLURM_JOB_ID"])
                .replace("%t", str(rank)))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def srun(args: list[str]) -> None:
    files = {}
    while args and args[0].startswith("--"):
        if args[0] in ("--output", "--error"):
            files[args[0]] = args[1]
            args = args[2:]
        else:
            args = args[1:]
    procs = []
    for rank in range(int(os.environ["SLURM_NTASKS"])):
        env = {**os.environ, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank), "SLURM_STEP_ID": "0"}
        out = open(fill(files.get("--output", "/dev/null"), rank), "a")
        err = open(fill(files.get("--error", "/dev/null"), rank), "a")
        procs.append(subprocess.Popen(args, env=env, stdout=out, stderr=err))
    sys.exit(max(p.wait() for p in procs))


def install(folder: str) -> None:
    for tool in ("sbatch", "srun", "sacct", "scancel"):
        path = Path(folder) / tool
        path.write_text(f'#!/bin/sh\nFAKE_SLURM_DIR="{Path(folder).resolve()}" exec "{sys.executable}" '
                        f'"{Path(__file__).resolve()}" {tool} "$@"\n')
        path.chmod(0o755)


if __name__ == "__main__":
    tool, rest = sys.argv[1], sys.argv[2:]
    if tool == "install":
        install(rest[0])
    elif tool == "sbatch":
        sbatch(rest[-1])
    elif tool == "srun":
        srun(rest)
    elif tool == "sacct":
        states = Path(os.environ["FAKE_SLURM_DIR"]) / "states"
        print("JobID|State|NodeList")
        for line in states.read_text().splitlines() if states.exists() else []:
            name, status = line.split()
            print(f"{name}|{'COMPLETED' if status == '0' else 'FAILED'}|localhost")
