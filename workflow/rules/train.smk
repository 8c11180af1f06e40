# train: one job per experiment; CUDA (bf16) on GPU nodes, CPU elsewhere; torchrun for gpus > 1.


rule train:
    input:
        shards=rules.shard.output[0],
    output:
        model=f"{ROOT}/models/{{experiment}}/model.pt",
        history=f"{ROOT}/models/{{experiment}}/history.csv",
    params:
        settings=as_json(config["train"]),
        experiment=experiment_json,
        code=fingerprint("modalmerge.stages.train"),
        out_dir=lambda wildcards, output: str(Path(output.model).parent),
        launcher=train_launcher,
    log:
        f"{LOGS}/train/{{experiment}}.log",
    benchmark:
        f"{BENCH}/train/{{experiment}}.tsv"
    threads: config["train"]["threads"]
    resources:
        **train_resources(),
    shell:
        "{params.launcher} train --settings {params.settings:q} --experiment {params.experiment:q}"
        " --shards {input.shards:q} --out-dir {params.out_dir:q} --threads {threads} > {log:q} 2>&1"
