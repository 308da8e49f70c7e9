"""Diagnostic runner: train, greedy-evaluate every EVERY env steps (20 episodes), stop when
greedy success >= 0.9 with mean successful path <= 1.2x shortest. Prints one JSON line."""
import json, sys, time, argparse, ast
import numpy as np
from sshr_torch.config import TrainConfig
from sshr_torch.trainer import Trainer
from sshr_torch.maze import load_maze, shortest_path_length

def greedy(agent, env, n, seed):
    succ, lens = 0, []
    for i in range(n):
        obs, _ = env.reset(seed=seed if i == 0 else None)
        s, g = obs["observation"], obs["desired_goal"]
        L, done, info = 0, False, {}
        while not done:
            obs, _, te, tr, info = env.step(agent.act(s, g, 0.0))
            s, L = obs["observation"], L + 1
            done = te or tr
        if info.get("is_success"):
            succ += 1; lens.append(L)
    return succ / n, (float(np.mean(lens)) if lens else float("nan"))

class T(Trainer):
    def __init__(self, config, every, shortest):
        super().__init__(config)
        self.every, self.shortest = every, shortest
        self.next_eval = every
        self.reached_at = None
        self.curve = []
    def _evaluate(self, episode):
        if self.progress.env_steps < self.next_eval:
            return
        self.next_eval = (self.progress.env_steps // self.every + 1) * self.every
        rate, length = greedy(self.agent, self.eval_env, 20, 1234 + episode)
        self.progress.eval_success_rate, self.progress.eval_mean_length = rate, length
        self.curve.append((self.progress.env_steps, rate, length))
        if self.reached_at is None and rate >= 0.9 and length <= 1.2 * self.shortest:
            self.reached_at = self.progress.env_steps
    def _final_evaluation(self):
        self.next_eval = 0
        self._evaluate(self.progress.episode)
    def _budget_spent(self):
        return self.reached_at is not None or super()._budget_spent()
    def _write_images(self):
        pass

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--label", default="")
    p.add_argument("--every", type=int, default=2000)
    p.add_argument("--nostop", action="store_true")
    p.add_argument("--ss-zero", action="store_true", help="Eq. 1 without the Q term (ss_value zero)")
    p.add_argument("--first", action="store_true", help="stop at the first goal, no evals")
    p.add_argument("kv", nargs="*")
    a = p.parse_args()
    kw = {}
    for item in a.kv:
        k, v = item.split("=", 1)
        try:
            kw[k] = ast.literal_eval(v)
        except Exception:
            kw[k] = v
    base = dict(quiet=True, eval_interval=1, image_interval=0, checkpoint_interval=10**9,
                torch_threads=1, runs_root="/tmp/wt12/runs")
    import os
    base["run_dir"] = f"/tmp/wt12/runs/{a.label}_{os.getpid()}_{time.time_ns()}"
    base.update(kw)
    cfg = TrainConfig(**base).validate()
    shortest = shortest_path_length(load_maze(cfg.maze))
    t = T(cfg, a.every, shortest)
    if a.ss_zero and t.controller is not None:
        begin = t.controller.begin_episode
        t.controller.begin_episode = lambda ep, state, max_q: begin(ep, state, None)
    if a.first:
        t._evaluate = lambda episode: None
        t._budget_spent = lambda: t.progress.first_success_step is not None or Trainer._budget_spent(t)
    if a.nostop:
        t._budget_spent = lambda: Trainer._budget_spent(t)
    t0 = time.process_time()
    r = t.run()
    # Values and greedy moves for the real goal by shortest distance d to it.
    from sshr_torch.maze import bfs_distances
    maze = load_maze(cfg.maze)
    dist = bfs_distances(maze, maze.goal).ravel()
    cells = np.flatnonzero(dist > 0)
    q = r.agent.q_values(cells, maze.cell_index(*maze.goal))
    env = t.eval_env.unwrapped
    nxt = env.next_cell[cells] if hasattr(env, "next_cell") else None  # (n, 4)
    prof = []
    for lo in range(0, int(dist.max()) + 1, 10):
        sel = (dist[cells] > lo) & (dist[cells] <= lo + 10)
        if not sel.any():
            continue
        row = [lo + 10, round(float(q[sel].max(1).mean()), 3)]
        if nxt is not None:
            greedy_next = nxt[sel, q[sel].argmax(1)]
            row.append(round(float((dist[greedy_next] < dist[cells][sel]).mean()), 2))
        prof.append(row)
    out = dict(label=a.label, ss_zero=a.ss_zero, **kw, shortest=shortest, reached_at=t.reached_at,
               first_success=r.summary["first_success_step"], env_steps=r.summary["env_steps"],
               final=t.curve[-1] if t.curve else None, best=max(t.curve, key=lambda c: c[1]) if t.curve else None,
               cpu_s=round(time.process_time() - t0, 1), profile=prof, curve=t.curve)
    print(json.dumps(out))
    with open("/tmp/wt12/results.jsonl", "a") as f:
        f.write(json.dumps(out) + "\n")

main()
