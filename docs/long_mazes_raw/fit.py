"""Capacity check: regress the DQN's architecture (one-hot s||g -> 256 ReLU -> 4) onto the true
Q*(s, g, a) of keulen_hard for all goal pairs, and see whether the greedy walk to the real goal
works. Args: param (gamma01 | neg) gamma updates goal_share"""
import sys, time
import numpy as np, torch
from sshr_torch.maze import load_maze, bfs_distances
from sshr_torch.env import GridMazeEnv
torch.set_num_threads(1)
kind, gamma, n_up, share = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
maze = load_maze(sys.argv[5] if len(sys.argv) > 5 else "keulen_hard")
env = GridMazeEnv(maze)
nxt = env.next_cell  # (n_cells, 4)
free = np.flatnonzero(~maze.walls.ravel())
n = maze.n_cells
D = np.full((n, n), -1, dtype=np.int64)
for g in free:
    D[:, g] = bfs_distances(maze, maze.cell_position(g)).ravel()
goal = maze.cell_index(*maze.goal); start = maze.cell_index(*maze.start)
def qstar(s, g):  # (B,4)
    d_next = D[nxt[s], g[:, None]]  # distance after the move
    if kind == "gamma01":
        return np.where(d_next == 0, 1.0, gamma ** d_next)  # reward 1 on arrival, Q = gamma^(d'-0)
    return np.where(d_next == 0, 0.0, -(1 - gamma ** d_next) / (1 - gamma))
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(2 * n, 256), torch.nn.ReLU(), torch.nn.Linear(256, 4))
emb = torch.nn.EmbeddingBag(2 * n, 256, mode="sum")
with torch.no_grad():
    emb.weight.copy_(net[0].weight.t())
head = net[2]; b1 = net[0].bias
opt = torch.optim.Adam(list(emb.parameters()) + [b1] + list(head.parameters()), lr=1e-3)
rng = np.random.default_rng(0)
def q_of(s, g):
    idx = torch.as_tensor(np.stack([s, n + g], 1))
    return head(torch.relu(emb(idx) + b1))
def check():
    with torch.no_grad():
        s = free[free != goal]
        q = q_of(s, np.full(len(s), goal)).numpy()
    dn = D[nxt[s, q.argmax(1)], goal]; d = D[s, goal]
    correct = dn < d
    prof = [(lo + 20, round(float(correct[(d > lo) & (d <= lo + 20)].mean()), 2)) for lo in range(0, d.max(), 20)]
    pos, L = start, 0
    while pos != goal and L < 300:
        with torch.no_grad():
            a = int(q_of(np.array([pos]), np.array([goal])).argmax())
        pos = nxt[pos, a]; L += 1
    return L if pos == goal else None, prof
import copy, os
td = os.environ.get("TD")  # TD mode: target-network bootstrapping on uniform (s, g, a)
interval = int(os.environ.get("INTERVAL", "500"))
if td:
    t_emb, t_b1, t_head = copy.deepcopy(emb), b1.detach().clone(), copy.deepcopy(head)
t0 = time.time()
for i in range(1, n_up + 1):
    s = rng.choice(free, 128)
    g = np.where(rng.random(128) < share, goal, rng.choice(free, 128))
    if td:
        a = rng.integers(0, 4, 128)
        s2 = nxt[s, a]
        done = s2 == g
        with torch.no_grad():
            idx = torch.as_tensor(np.stack([s2, n + g], 1))
            v = t_head(torch.relu(t_emb(idx) + t_b1)).amax(1).numpy()
        if kind == "gamma01":
            y = np.where(done, 1.0, np.clip(gamma * v, 0, 1))
        else:
            y = np.where(done, 0.0, np.clip(-1 + gamma * v, -1 / (1 - gamma), 0))
        qa = q_of(s, g).gather(1, torch.as_tensor(a)[:, None]).squeeze(1)
        loss = torch.nn.functional.smooth_l1_loss(qa, torch.as_tensor(y, dtype=torch.float32))
        if i % interval == 0:
            t_emb.load_state_dict(emb.state_dict()); t_b1 = b1.detach().clone(); t_head.load_state_dict(head.state_dict())
    else:
        y = torch.as_tensor(qstar(s, g), dtype=torch.float32)
        loss = torch.nn.functional.smooth_l1_loss(q_of(s, g), y)
    opt.zero_grad(); loss.backward(); opt.step()
    if i % (n_up // 4) == 0:
        print(kind, gamma, share, i, "loss %.2e" % loss.item(), "greedy path", check(), "%.0fs" % (time.time() - t0), flush=True)
