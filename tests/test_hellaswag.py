"""trainer/hellaswag.py: the scoring (mean completion loss, as llm.c and modded-nanogpt), the batched scoring
against the item-by-item reference, the rank split and FSDP2's lockstep, the progress lines,
data/hellaswag/prepare.py offline (file:// URLs), and train.py scoring a fixture at its evals."""
import json
import os

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import trainutil as tu

gpt2_bpe = pytest.importorskip('data.gpt2_bpe')
from model import GPT, GPTConfig  # noqa: E402
from trainer import hellaswag  # noqa: E402

# the official jsonl's layout (hellaswag_val.jsonl): the scorer reads ctx, endings and label
ITEMS = [
    dict(ind=24, activity_label='Roof shingle removal', ctx_a='A man is sitting on a roof.', ctx_b='he',
         ctx='A man is sitting on a roof. he', split='val', split_type='indomain', label=3, source_id='x',
         endings=['is using wrap to wrap a pair of skis.', 'is ripping level tiles off.',
                  "is holding a rubik's cube.", 'starts pulling up roofing on a roof.']),
    dict(ind=92, activity_label='Clean and jerk', ctx_a='A lady walks to a barbell.', ctx_b='she',
         ctx='A lady walks to a barbell. She bends down and grabs the pole. the lady', split='val',
         split_type='zeroshot', label=0, source_id='y',
         endings=['stands and lifts the weight over her head.', 'swings and lands in her arms.',
                  'pulls the barbell forward.', 'pulls a rope attached to the barbell.']),
    dict(ind=106, activity_label='Canoeing',
         ctx_a='Two women in a child are shown in a canoe while a man pulls',
         ctx_b='the canoe', ctx='Two women in a child are shown in a canoe while a man pulls the canoe',
         split='val', split_type='indomain', label=2, source_id='z',
         endings=['remains on the water.', 'walks away.', 'is dragged to the shore by the man.',
                  'falls and sinks.']),
]


# ITEMS with their contexts cut to different numbers of words and their labels moved: rows of many lengths
VARIED = [dict(ITEMS[k % 3], ctx=' '.join(ITEMS[k % 3]['ctx'].split()[:2 + 5 * k % 13]), label=k % 4)
          for k in range(12)]


def write_items(path, items=ITEMS):
    with open(path, 'w', encoding='utf-8') as f:
        f.write(''.join(json.dumps(it) + '\n' for it in items))
    return str(path)


@pytest.fixture(scope='module')
def enc():
    try:
        return gpt2_bpe.gpt2_encoding()
    except FileNotFoundError as e:
        pytest.skip(str(e))


class BigramOracle(torch.nn.Module):
    """A stub model.py GPT: logits[t] put +20 on the token that follows x[t] in one known token sequence (its
    bigrams), 0 elsewhere. Given the right item's full tokens it knows the answer, if the scorer aligns the
    predictions with the ending's tokens."""
    def __init__(self, known, V=50257):
        super().__init__()
        self.next = {a: b for a, b in zip(known[:-1], known[1:])}
        self.V = V

    def forward(self, x, targets=None):
        logits = torch.zeros(*x.shape, self.V)
        for b in range(x.shape[0]):
            for t in range(x.shape[1]):
                if int(x[b, t]) in self.next:
                    logits[b, t, self.next[int(x[b, t])]] = 20.0
        return logits, None


class Unigram(torch.nn.Module):
    """A stub whose logits are the same vector at every position: each token's loss is
    -log_softmax(w)[token]."""
    def __init__(self, w):
        super().__init__()
        self.w = w

    def forward(self, x, targets=None):
        return self.w.expand(*x.shape, -1), None


@pytest.fixture(scope='module')
def tiny_gpt():
    """A random one-layer model.py GPT over GPT-2's vocabulary: causal, with position embeddings, so its
    logits differ per position and per context (a shifted or leaking padding changes them); its embeddings
    (tied to lm_head) scaled up so that the endings' losses lie apart."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=50257, n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    with torch.no_grad():
        model.transformer.wte.weight.mul_(20)
    return model.eval()


def scored_alone(model, rendered):
    """The reference: trainer/hellaswag.py's scorer before batching, one forward per item of its 4 rows alone.
    Returns the per-row summed and mean completion losses (4 per item, in order) and dict(acc, acc_sum, n)."""
    totals, means, right = [], [], [0, 0]
    with torch.no_grad():
        for tokens, mask, label in rendered:
            x, y = tokens[:, :-1], tokens[:, 1:].contiguous()
            logits, _ = model(x, y)
            losses = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction='none')
            losses = losses.view(y.shape)
            m = mask[:, 1:].float()
            total = (losses * m).sum(1)
            mean = total / m.sum(1)
            right[0] += int(mean.argmin()) == label
            right[1] += int(total.argmin()) == label
            totals.append(total)
            means.append(mean)
    n = len(rendered)
    return (torch.cat(totals), torch.cat(means),
            dict(acc=right[0] / max(n, 1), acc_sum=right[1] / max(n, 1), n=n))


class Counting(torch.nn.Module):
    """A model's forward, counted."""
    def __init__(self, model):
        super().__init__()
        self.model, self.forwards = model, 0

    def forward(self, x, targets=None):
        self.forwards += 1
        return self.model(x, targets)


def test_known_answer_wins(enc):
    """An oracle of item 1's right continuation picks it (ending 0), and no other item's label by chance."""
    item = ITEMS[1]
    known = enc.encode_ordinary(item['ctx'] + ' ' + item['endings'][item['label']])
    r = hellaswag.evaluate(BigramOracle(known), [hellaswag.render(item, enc, 1024)], 'cpu', torch.no_grad())
    assert r == dict(acc=1.0, acc_sum=1.0, n=1)
    # the same oracle on an item whose right answer is another ending: wrong (it knows item 1's ending 0 only)
    wrong = dict(item, label=2)
    assert hellaswag.evaluate(BigramOracle(known), [hellaswag.render(wrong, enc, 1024)], 'cpu',
                              torch.no_grad())['acc'] == 0.0


def test_mean_and_sum_losses_match_the_math(enc):
    """Mean vs summed completion loss, each computed here token by token from a unigram model's log-probs; the
    weights make a long ending of likely tokens (lowest mean) and a short one (lowest sum) disagree."""
    item = dict(ctx='The cat sat on the', endings=['cat', 'mat and the mat and the mat', 'dog',
                                                   'roof of the house'],
                label=1)
    w = torch.zeros(50257)
    for tok in enc.encode_ordinary(' mat and the'):
        w[tok] = 6.0 # likely tokens: the long ending's mean loss is low, its sum is not
    w[enc.encode_ordinary(' cat')] = 0.5 # the one-token ending: the lowest sum
    lp = torch.log_softmax(w, 0)
    ends = [enc.encode_ordinary(' ' + e) for e in item['endings']]
    sums = [-sum(lp[t].item() for t in e) for e in ends]
    means = [s / len(e) for s, e in zip(sums, ends)]
    tokens, mask, label = hellaswag.render(item, enc, 1024)
    total, mean = hellaswag.item_losses(Unigram(w), tokens, mask, torch.no_grad())
    assert torch.allclose(total, torch.tensor(sums), rtol=1e-5) and torch.allclose(mean, torch.tensor(means),
                                                                                   rtol=1e-5)
    assert int(np.argmin(means)) != int(np.argmin(sums)) # the two criteria disagree here
    r = hellaswag.evaluate(Unigram(w), [(tokens, mask, int(np.argmin(means)))], 'cpu', torch.no_grad())
    assert r == dict(acc=1.0, acc_sum=0.0, n=1)


def test_long_context_cut_from_the_left_and_ranks_split(enc):
    """block_size shorter than an item: the context loses its start, the ending stays whole; ranks 0 and 1 of
    2 score items 0::2 and 1::2, together the whole set."""
    tokens, mask, _ = hellaswag.render(ITEMS[1], enc, 8)
    ctx = enc.encode_ordinary(ITEMS[1]['ctx'])
    assert tokens.shape[1] == 9
    # each row: the context's last tokens, the whole ending
    for row, m, e in zip(tokens, mask, ITEMS[1]['endings']):
        end = enc.encode_ordinary(' ' + e)
        assert (row[:len(ctx + end)].tolist() == (ctx + end)[-9:]
                and m[:9].tolist() == ([0] * 9 + [1] * len(end))[-9:])
    torch.manual_seed(0)
    w = torch.randn(50257)
    rendered = [hellaswag.render(it, enc, 16) for it in ITEMS * 3]
    whole = hellaswag.evaluate(Unigram(w), rendered, 'cpu', torch.no_grad())
    parts = [hellaswag.evaluate(Unigram(w), rendered, 'cpu', torch.no_grad(), rank=r,
                                world_size=2) for r in (0, 1)]
    assert [p['n'] for p in parts] == [5, 4] and whole['n'] == 9
    assert sum(p['acc'] * p['n'] for p in parts) == pytest.approx(whole['acc'] * 9)


def test_batched_scores_equal_item_by_item(enc, tiny_gpt):
    """Items of different lengths scored one per forward, a few per forward (right-padded to the longest row
    of each batch) and all in one: every row's summed and mean completion loss and acc, acc_sum and n are the
    reference's, item by item; batch_tokens bounds each batch of several items."""
    rendered = [hellaswag.render(it, enc, 64) for it in VARIED]
    assert len({t.shape[1] for t, _, _ in rendered}) > 4 # many lengths: the batches pad
    ref_total, ref_mean, ref = scored_alone(tiny_gpt, rendered)
    assert 0 < ref['acc'] < 1 and 0 < ref['acc_sum'] < 1 # the labels are not all predicted, nor none
    for batch_tokens in (1, 500, hellaswag.BATCH_TOKENS):
        runs = hellaswag.batches(rendered, batch_tokens)
        assert [a for a, _ in runs[1:]] == [b for _, b in runs[:-1]] and runs[0][0] == 0 and runs[-1][1] == 12
        for a, b in runs:
            T = max(t.shape[1] - 1 for t, _, _ in rendered[a:b]) # the batch's longest model input
            assert b - a == 1 or 4 * (b - a) * T <= batch_tokens
        losses = [hellaswag.item_losses(tiny_gpt, *hellaswag.collate(rendered[a:b])[:2], torch.no_grad())
                  for a, b in runs]
        total, mean = torch.cat([t for t, _ in losses]), torch.cat([m for _, m in losses])
        assert torch.allclose(total, ref_total, rtol=1e-5) and torch.allclose(mean, ref_mean, rtol=1e-5)
        r = hellaswag.evaluate(tiny_gpt, rendered, 'cpu', torch.no_grad(), batch_tokens=batch_tokens)
        assert r == ref, (batch_tokens, r, ref)
    assert len(hellaswag.batches(rendered, 1)) == 12
    assert len(hellaswag.batches(rendered, hellaswag.BATCH_TOKENS)) == 1
    assert any(b - a > 1 and len({rendered[i][0].shape[1] for i in range(a, b)}) > 1
               for a, b in hellaswag.batches(rendered, 500)) # batches of several items of different lengths


def test_batched_rank_split_and_lockstep(enc, tiny_gpt):
    """world_size=2: each rank's batched score is the reference's on its items rank::2; with lockstep (FSDP2)
    a rank with fewer batches joins each forward of the other, uncounted: both run as many forwards as the
    rank with the most batches, and score the same; a rank with no item runs them too."""
    long = hellaswag.render(dict(ITEMS[2], ctx=ITEMS[1]['ctx'] + ' ' + ITEMS[2]['ctx']), enc, 64)
    short = hellaswag.render(dict(ITEMS[0], ctx='he'), enc, 64)
    rendered = [hellaswag.render(it, enc, 64) for it in VARIED] + [long, short] * 3
    n_batches = [len(hellaswag.batches(rendered[r::2], 400)) for r in (0, 1)]
    assert n_batches[0] > n_batches[1] # rank 0 has the long items: more batches, so lockstep matters
    for r in (0, 1):
        ref = scored_alone(tiny_gpt, rendered[r::2])[2]
        for lockstep in (False, True):
            model = Counting(tiny_gpt)
            got = hellaswag.evaluate(model, rendered, 'cpu', torch.no_grad(), rank=r, world_size=2,
                                     lockstep=lockstep, batch_tokens=400)
            assert got == ref and got['n'] == 9
            assert model.forwards == (max(n_batches) if lockstep else n_batches[r])
    for r, n in ((0, 1), (1, 0)): # one item, two ranks: rank 1 scores none, yet runs rank 0's one forward
        model = Counting(tiny_gpt)
        got = hellaswag.evaluate(model, rendered[:1], 'cpu', torch.no_grad(), rank=r, world_size=2,
                                 lockstep=True)
        assert got['n'] == n and model.forwards == 1


def test_progress_lines_on_long_evals_only(enc, monkeypatch, capsys):
    """An eval of more than PROGRESS_ITEMS items prints, on rank 0 only, a line at each tenth of its items
    (done / its total, the running acc of those done), none at the end; a shorter eval prints nothing."""
    monkeypatch.setattr(hellaswag, 'PROGRESS_ITEMS', 10)
    torch.manual_seed(0)
    model = Unigram(torch.randn(50257) * 3)
    rendered = [hellaswag.render(it, enc, 64) for it in (VARIED * 2)[:20]]
    hellaswag.evaluate(model, rendered[:10], 'cpu', torch.no_grad(), batch_tokens=1)
    assert capsys.readouterr().out == '' # 10 items: not more than PROGRESS_ITEMS
    r = hellaswag.evaluate(model, rendered, 'cpu', torch.no_grad(), batch_tokens=1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(', ')[0] for line in lines] == [f"hellaswag: {k}/20 items" for k in range(2, 20, 2)]
    for k, line in zip(range(2, 20, 2), lines): # the running acc: the reference's on the items done
        assert f"acc {scored_alone(model, rendered[:k])[2]['acc']:.4f} so far" in line, line
    assert r == scored_alone(model, rendered)[2]
    hellaswag.evaluate(model, rendered, 'cpu', torch.no_grad(), rank=1, world_size=2, batch_tokens=1)
    assert capsys.readouterr().out == '' # rank 1: silent
    hellaswag.evaluate(model, rendered, 'cpu', torch.no_grad(), rank=0, world_size=2, batch_tokens=300)
    lines = capsys.readouterr().out.splitlines() # rank 0's 10 items, a few per forward: a line per batch
    runs = hellaswag.batches(rendered[0::2], 300)
    assert 2 < len(runs) < 10 and [line.split(', acc ')[0] for line in lines] == [
        f"hellaswag: {b}/10 items (rank 0's share of 20)" for _, b in runs[:-1]]


def test_prepare_offline_and_without_network(tmp_path):
    src = write_items(tmp_path / 'src.jsonl')
    out = tmp_path / 'hs' / 'hellaswag_val.jsonl'
    r = tu.check_ok(tu.run_script('data/hellaswag/prepare.py', f'--url=file://{src}', f'--out={out}'))
    assert 'wrote 3 HellaSwag items' in r.stdout and out.read_text() == open(src).read()
    r = tu.run_script('data/hellaswag/prepare.py', f'--url=file://{tmp_path}/none.jsonl',
                      f'--out={tmp_path}/x')
    tu.check_one_line_error(r, 'cannot download', 'without network')
    (tmp_path / 'bad.jsonl').write_text('{"ctx": "a"}\n')
    r = tu.run_script('data/hellaswag/prepare.py', f'--url=file://{tmp_path}/bad.jsonl',
                      f'--out={tmp_path}/x')
    tu.check_one_line_error(r, 'bad.jsonl:1', 'not a HellaSwag item')
    assert not os.path.exists(tmp_path / 'x') and os.listdir(tmp_path / 'hs') == ['hellaswag_val.jsonl']


def test_train_logs_hellaswag(enc, tmp_path, tiny_dataset):
    """A GPT-2 BPE run scores the fixture at each eval (console, JSON log); a char-level run and an absent
    file get a one-line notice and train on."""
    data = tmp_path / 'bpe'
    data.mkdir()
    ids = np.array(enc.encode_ordinary(tu.tiny_text(6000)), dtype=np.uint16)
    ids[:1200].tofile(data / 'train.bin')
    ids[1200:].tofile(data / 'val.bin')
    hs_file = write_items(tmp_path / 'hs.jsonl', ITEMS * 2)
    log = tmp_path / 'log.jsonl'
    bpe, char, absent = tu.parallel(
        lambda: tu.train(dataset=str(data), out_dir=str(tmp_path / 'o1'), max_iters=2, eval_interval=2,
                         block_size=16, batch_size=4, hellaswag_file=hs_file, hellaswag_items=5,
                         log_file=str(log)),
        lambda: tu.train(dataset=tiny_dataset, out_dir=str(tmp_path / 'o2'), max_iters=0,
                         hellaswag_file=hs_file),
        lambda: tu.train(dataset=str(data), out_dir=str(tmp_path / 'o3'), max_iters=0, block_size=16,
                         batch_size=4, hellaswag_file=str(tmp_path / 'none.jsonl')))
    tu.check_ok(bpe)
    assert 'HellaSwag: 5 items from' in bpe.stdout and 'so far' not in bpe.stdout # 5 items: no progress lines
    evals = [r for r in map(json.loads, log.read_text().splitlines()) if 'val_loss' in r]
    assert [e['iter'] for e in evals] == [0, 2]
    for e in evals:
        assert e['hellaswag'] * 5 == round(e['hellaswag'] * 5) and 0 <= e['hellaswag'] <= 1, e
        assert f"hellaswag {e['hellaswag']:.4f} (5 items" in bpe.stdout
    tu.check_ok(char)
    assert 'HellaSwag needs GPT-2 BPE' in char.stdout and 'hellaswag 0' not in char.stdout
    tu.check_ok(absent)
    assert "none.jsonl' not found" in absent.stdout and 'hellaswag_val.jsonl' not in absent.stderr
