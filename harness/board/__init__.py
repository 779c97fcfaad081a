"""The shared web leaderboard: `harness board serve` (FastAPI over the SQL store of harness.leaderboard)
and the server side of `harness submit`, which re-scores every submission from its predictions with
the server's own ground truth, so that no edited metrics.json can reach the board."""
