"""The tables in the README and the guides are exactly what the committed results give."""

from pathlib import Path

from harmono.experiments.harmonic import claims as harmonic_claims
from harmono.experiments.harmonic import gpt_summary, toy_leakage, toy_tables, toy_vs_paper
from harmono.report.marked_sections import markers
from harmono.report.text_table import format_table

ROOT = Path(__file__).parents[1]


def _section(path: Path, name: str) -> str:
    begin, end = markers(name)
    return path.read_text().split(begin)[1].split(end)[0].strip()


def test_toy_tables_in_readme_and_guide_match_results_toy():
    records = toy_tables.read_results(ROOT / "results" / "toy")
    stale = "is stale: run `harmono toy tables results/toy --write README.md docs/harmonic-loss.md`"
    expected = toy_tables.results_markdown(records).strip()
    for doc in ("README.md", "docs/harmonic-loss.md"):
        assert _section(ROOT / doc, toy_tables.SECTION) == expected, f"{doc} {stale}"
    guide = ROOT / "docs" / "harmonic-loss.md"
    assert _section(guide, toy_tables.EXPONENT_SECTION) == toy_tables.exponent_markdown(records).strip(), (
        stale
    )
    assert (
        _section(guide, toy_tables.EFFICIENCY_SECTION) == toy_tables.efficiency_markdown(records).strip()
    ), stale
    controls = toy_tables.efficiency_controls_markdown(records).strip()
    assert _section(guide, toy_tables.CONTROLS_SECTION) == controls, stale
    evaluation = toy_tables.suite_controls_markdown(records).strip()
    assert _section(guide, toy_tables.SUITE_CONTROLS_SECTION) == evaluation, stale
    tests = toy_vs_paper.vs_paper_markdown(records).strip()
    assert _section(guide, toy_vs_paper.VS_PAPER_SECTION) == tests, stale
    leakage = toy_leakage.leakage_markdown(records).strip()
    assert _section(guide, toy_leakage.LEAKAGE_SECTION) == leakage, stale


def test_dropout_gap_tables_in_guide_match_results_toy_dropout_gap():
    from harmono.experiments.harmonic import toy_checkpoint

    reports = toy_checkpoint.read_dropout_gap_reports(ROOT / "results" / "toy-dropout-gap")
    guide = ROOT / "docs" / "harmonic-loss.md"
    stale = (
        "docs/harmonic-loss.md is stale: run `harmono toy tables results/toy --dropout-gap "
        "results/toy-dropout-gap --write README.md docs/harmonic-loss.md`"
    )
    found = _section(guide, toy_checkpoint.DROPOUT_GAP_SECTION)
    assert found == toy_checkpoint.dropout_gap_markdown(reports).strip(), stale
    found = _section(guide, toy_checkpoint.DROPOUT_SITES_SECTION)
    assert found == toy_checkpoint.dropout_site_markdown(reports).strip(), stale


def test_gpt_table_in_guide_matches_results_gpt():
    records = sorted((ROOT / "results" / "gpt").glob("*.json"))
    found = _section(ROOT / "docs" / "gpt.md", gpt_summary.SECTION)
    if not records:
        assert found == ""
        return
    rows = gpt_summary.summary_rows(records)
    expected = format_table(*gpt_summary.table_rows(rows), markdown=True).strip()
    assert found == expected, (
        "docs/gpt.md is stale: run `harmono gpt summary results/gpt/*.json --write docs/gpt.md`"
    )


def test_claims_in_readme_match_results():
    headers, rows = harmonic_claims.claim_rows(ROOT / "results")
    expected = format_table(headers, rows, markdown=True).strip()
    found = _section(ROOT / "README.md", harmonic_claims.SECTION)
    assert found == expected, "README.md is stale: run `harmono claims --write README.md`"


def test_lm_table_in_readme_and_guide_matches_results_lm():
    from harmono.experiments.lm.tables import SECTION, lm_table, read_records

    expected = lm_table(read_records(ROOT / "results" / "lm")).strip()
    for doc in ("README.md", "docs/language-models.md"):
        assert _section(ROOT / doc, SECTION) == expected, (
            f"{doc} is stale: run `harmono lm table results/lm --write docs/language-models.md README.md`"
        )


def test_mnist_table_in_guide_matches_results_mnist():
    from harmono.experiments.harmonic.mnist_summary import SECTION, summary_rows

    records = sorted((ROOT / "results" / "mnist").glob("*.json"))
    assert records, "results/mnist/ holds no record; the guide quotes MNIST and Fashion-MNIST"
    expected = format_table(*summary_rows(records), markdown=True).strip()
    assert _section(ROOT / "docs" / "harmonic-loss.md", SECTION) == expected, (
        "docs/harmonic-loss.md is stale: run "
        "`harmono mnist --summary results/mnist/*.json --write docs/harmonic-loss.md`"
    )


def test_sae_table_in_guide_matches_results_sae():
    from harmono.sae.compare import METRICS, SECTION, compare_rows

    records = sorted((ROOT / "results" / "sae").glob("*.json"))
    assert records, "results/sae/ holds no record; docs/sae.md quotes the Fashion-MNIST SAEs"
    headers = ["run", "arch", "mono_coef", "n", *(title for title, _, _ in METRICS)]
    expected = format_table(headers, compare_rows(records, pool_seeds=True), markdown=True).strip()
    assert _section(ROOT / "docs" / "sae.md", SECTION) == expected, (
        "docs/sae.md is stale: run `harmono sae compare results/sae/*.json --pool-seeds --write docs/sae.md`"
    )


def test_finetune_table_in_guide_matches_results_finetune():
    from harmono.cli.finetune import sweep_table
    from harmono.experiments.mono.finetune_sweep import SECTION, read_sweep_record, summarize_sweep

    record = read_sweep_record(ROOT / "results" / "finetune" / "finetune-fashion.json")
    expected = sweep_table(summarize_sweep(record["runs"]), markdown=True).strip()
    assert _section(ROOT / "docs" / "finetune.md", SECTION) == expected, (
        "docs/finetune.md is stale: run "
        "`harmono finetune table results/finetune/finetune-fashion.json --write docs/finetune.md`"
    )
