"""Many sandboxes and many calls at once."""

from concurrent.futures import ThreadPoolExecutor


def test_parallel_sandboxes_and_runs(client):
    n_sandboxes, n_runs = 10, 20
    with ThreadPoolExecutor(n_sandboxes) as pool:
        sessions = list(pool.map(lambda i: client.create(hostname=f"par{i}", labels={"test": "parallel"}),
                                 range(n_sandboxes)))
    try:
        assert len({s.id for s in sessions}) == n_sandboxes

        def one(job):
            i, j = job
            s = sessions[i]
            token = f"{i}-{j}"
            r = s.exec(["/bin/sh", "-c", f"echo {token} > /tmp/{token}; hostname; cat /tmp/{token}; ls /tmp | wc -l"],
                       stdin=None)
            return i, j, r

        jobs = [(i, j) for i in range(n_sandboxes) for j in range(n_runs)]
        with ThreadPoolExecutor(40) as pool:
            results = list(pool.map(one, jobs))
        for i, j, r in results:
            assert r.exit_code == 0, r
            lines = r.stdout.decode().split()
            assert lines[0] == f"par{i}" and lines[1] == f"{i}-{j}", (i, j, r.stdout)
            # Each sandbox's /tmp holds only its own files.
            assert 1 <= int(lines[2]) <= n_runs
        for i, s in enumerate(sessions):
            names = set(s.exec(["ls", "/tmp"]).stdout.decode().split())
            assert names == {f"{i}-{j}" for j in range(n_runs)}
    finally:
        with ThreadPoolExecutor(n_sandboxes) as pool:
            list(pool.map(lambda s: s.delete(), sessions))
