"""Bedrock Knowledge Base clients against docpipe's local stack, as a team
would point them: boto3 (bedrock-agent-runtime's Retrieve, bedrock-agent's
ingestion jobs), the AWS CLI, LangChain and LlamaIndex, with only
the endpoint and docpipe-issued SigV4 keys changed (no hooks). Reads
.local/aws.env's variables; exits non-zero on the first difference.
"""

import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import boto3
import botocore.exceptions

ENDPOINT = os.environ["DOCPIPE_API_URL"]
KB = os.environ["DOCPIPE_KB_ID"]
REGION = os.environ.get("AWS_REGION", "us-east-1")
KEYS = {
    "aws_access_key_id": os.environ["DOCPIPE_KB_ACCESS_KEY_ID"],
    "aws_secret_access_key": os.environ["DOCPIPE_KB_SECRET_ACCESS_KEY"],
}
BUCKET = os.environ["DOCPIPE_BUCKET"]
FOLDER = "uploads/demo/bedrock-clients/"
PREFIX = f"s3://{BUCKET}/{FOLDER}"
DOCS = {
    "a.md": ("Lighthouse keepers log the fog signal every hour at the harbour.",
             {"team": "harbour", "year": 2024, "tags": ["log", "fog"]}),
    "b.md": ("The harbour pump is serviced every spring by the works crew.",
             {"team": "works", "year": 2026, "tags": ["pump"]}),
    "c.md": ("Tide tables give high water at the harbour mouth.", None),
}

client = boto3.client("bedrock-agent-runtime", endpoint_url=ENDPOINT, region_name=REGION, **KEYS)


def check(condition, what):
    if not condition:
        sys.exit(f"bedrock clients: FAILED: {what}")
    print(f"ok: {what}")


def in_folder(condition=None):
    start = {"startsWith": {"key": "x-amz-bedrock-kb-source-uri", "value": PREFIX}}
    return {"andAll": [start, condition]} if condition else start


def retrieve(text="harbour", filter=None, results=10, **more):
    search = {"numberOfResults": results, "filter": in_folder(filter)}
    search.update(more)
    answer = client.retrieve(
        knowledgeBaseId=KB,
        retrievalQuery={"text": text},
        retrievalConfiguration={"vectorSearchConfiguration": search},
    )
    return answer


def names(answer):
    return sorted(r["location"]["s3Location"]["uri"].rsplit("/", 1)[1] for r in answer["retrievalResults"])


def upload():
    # LocalStack's own credentials (the stack's AWS_* variables).
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=REGION)
    for name, (text, attributes) in DOCS.items():
        if attributes:
            sidecar = json.dumps({"metadataAttributes": attributes})
            s3.put_object(Bucket=BUCKET, Key=f"{FOLDER}{name}.metadata.json", Body=sidecar.encode())
        s3.put_object(Bucket=BUCKET, Key=f"{FOLDER}{name}", Body=text.encode())
    deadline = time.time() + 90
    while time.time() < deadline:
        answer = retrieve(filter={"equals": {"key": "team", "value": "works"}})
        if len(retrieve()["retrievalResults"]) == 3 and names(answer) == ["b.md"]:
            return
        time.sleep(1)
    sys.exit("bedrock clients: the documents did not become searchable in 90 s")


def boto3_retrieve():
    operators = [
        ({"equals": {"key": "team", "value": "harbour"}}, ["a.md"]),
        ({"notEquals": {"key": "team", "value": "harbour"}}, ["b.md", "c.md"]),
        ({"greaterThan": {"key": "year", "value": 2025}}, ["b.md"]),
        ({"greaterThanOrEquals": {"key": "year", "value": 2024}}, ["a.md", "b.md"]),
        ({"lessThan": {"key": "year", "value": 2025}}, ["a.md"]),
        ({"lessThanOrEquals": {"key": "year", "value": 2026}}, ["a.md", "b.md"]),
        ({"in": {"key": "team", "value": ["harbour", "works"]}}, ["a.md", "b.md"]),
        ({"notIn": {"key": "team", "value": ["harbour"]}}, ["b.md"]),
        ({"startsWith": {"key": "x-amz-bedrock-kb-source-uri", "value": PREFIX + "a"}}, ["a.md"]),
        ({"listContains": {"key": "tags", "value": "fog"}}, ["a.md"]),
        ({"stringContains": {"key": "team", "value": "ork"}}, ["b.md"]),
        ({"orAll": [{"equals": {"key": "team", "value": "harbour"}},
                    {"equals": {"key": "x-amz-bedrock-kb-source-uri", "value": PREFIX + "c.md"}}]}, ["a.md", "c.md"]),
    ]
    for condition, expected in operators:
        operator = next(iter(condition))
        check(names(retrieve(filter=condition)) == expected, f"boto3 filter {operator} finds {expected}")
    for search_type in ["HYBRID", "SEMANTIC"]:
        answer = retrieve(text=DOCS["a.md"][0], overrideSearchType=search_type)
        first = answer["retrievalResults"][0]
        check(first["location"]["s3Location"]["uri"] == PREFIX + "a.md", f"boto3 {search_type} finds the copied sentence first")
        check(first["score"] >= 0.8, f"boto3 {search_type}: the copied sentence scores {first['score']:.3f} >= 0.8")
        check(first["metadata"]["team"] == "harbour" and "x-amz-bedrock-kb-data-source-id" in first["metadata"],
              f"boto3 {search_type}: metadata with Bedrock's own attributes")
    pages = client.get_paginator("retrieve").paginate(
        knowledgeBaseId=KB,
        retrievalQuery={"text": "harbour"},
        retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": 1, "filter": in_folder()}},
    )
    uris = [r["location"]["s3Location"]["uri"] for page in pages for r in page["retrievalResults"]]
    check(sorted(uris) == [PREFIX + n for n in ["a.md", "b.md", "c.md"]], f"boto3 paginator: {len(uris)} results, each once")


def boto3_errors():
    def raises(kind, call):
        try:
            call()
        except getattr(client.exceptions, kind) as error:
            message = error.response["Error"]["Message"]
            check(bool(message), f"boto3 catches {kind}: {message}")
            return
        sys.exit(f"bedrock clients: FAILED: no {kind}")

    raises("ValidationException", lambda: client.retrieve(
        knowledgeBaseId=KB, retrievalQuery={"text": "fog"},
        guardrailConfiguration={"guardrailId": "g1", "guardrailVersion": "1"}))
    raises("ValidationException", lambda: client.retrieve(
        knowledgeBaseId=KB, retrievalQuery={"text": "fog"}, nextToken="forged.token.value"))
    raises("ResourceNotFoundException", lambda: client.retrieve(
        knowledgeBaseId="KBNOSUCH01", retrievalQuery={"text": "fog"}))
    stranger = boto3.client("bedrock-agent-runtime", endpoint_url=ENDPOINT, region_name=REGION,
                            aws_access_key_id=KEYS["aws_access_key_id"],
                            aws_secret_access_key="not-the-secret-0123456789abcdefghijkl")
    try:
        stranger.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "fog"})
        sys.exit("bedrock clients: FAILED: a wrong secret was let in")
    except stranger.exceptions.AccessDeniedException as error:
        check(True, f"boto3 catches AccessDeniedException: {error.response['Error']['Message']}")


def serving(port, **settings):
    """docpipe-api on `port` over the local stack, with `settings` changed."""
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    env = dict(os.environ, API_LISTEN=f"127.0.0.1:{port}", API_KEYS=os.environ["DOCPIPE_API_KEY"] + ":demo",
               KNOWLEDGE_BASES=f"{KB}:demo", SIGV4_REGION=REGION,
               SIGV4_KEYS=f"{KEYS['aws_access_key_id']}:{KEYS['aws_secret_access_key']}:demo", **settings)
    process = subprocess.Popen([f"{target}/debug/docpipe-api"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/openapi.yaml", timeout=1)
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit(f"bedrock clients: docpipe-api on {port} did not start")


def boto3_errors_of_a_strained_service():
    """The exceptions of a tenant over its rate, of search slots held by
    searches waiting on a silent provider, and of that provider, each
    caught by its botocore class, from docpipe-api processes set up so."""
    def client_on(port):
        return boto3.client("bedrock-agent-runtime", endpoint_url=f"http://127.0.0.1:{port}",
                            region_name=REGION, **KEYS)

    def retrieve_on(caller):
        return caller.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "fog"})

    limited = serving(3101, TENANT_API_REQUESTS_PER_MINUTE="1")
    try:
        caller = client_on(3101)
        retrieve_on(caller)
        try:
            retrieve_on(caller)
            sys.exit("bedrock clients: FAILED: no ThrottlingException over the rate")
        except caller.exceptions.ThrottlingException as error:
            check(True, f"boto3 catches ThrottlingException: {error.response['Error']['Message']}")
    finally:
        limited.kill()
    # An embedding provider that takes connections and never answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    provider = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
    strained = serving(3102, TENANT_SEARCH_SLOTS="1", OPENAI_BASE_URL=provider, EMBEDDING_TIMEOUT_SECS="8",
                       EXTERNAL_MAX_ATTEMPTS="1")
    try:
        caller = client_on(3102)
        with concurrent.futures.ThreadPoolExecutor() as pool:
            first = pool.submit(retrieve_on, caller)
            time.sleep(0.5)
            try:
                retrieve_on(caller)
                sys.exit("bedrock clients: FAILED: no ServiceQuotaExceededException with the slots full")
            except caller.exceptions.ServiceQuotaExceededException as error:
                check(True, f"boto3 catches ServiceQuotaExceededException: {error.response['Error']['Message']}")
            try:
                first.result()
                sys.exit("bedrock clients: FAILED: a silent provider gave an answer")
            except caller.exceptions.DependencyFailedException as error:
                check(True, f"boto3 catches DependencyFailedException: {error.response['Error']['Message']}")
    finally:
        strained.kill()
        silent.close()


def ingestion_jobs():
    """bedrock-agent's StartIngestionJob, GetIngestionJob and ListIngestionJobs
    over docpipe's syncs of the knowledge base's data source."""
    agent = boto3.client("bedrock-agent", endpoint_url=ENDPOINT, region_name=REGION, **KEYS)
    data_source = retrieve()["retrievalResults"][0]["metadata"]["x-amz-bedrock-kb-data-source-id"]
    job = agent.start_ingestion_job(knowledgeBaseId=KB, dataSourceId=data_source,
                                    description="synced by the CI")["ingestionJob"]
    check(job["status"] in ("STARTING", "IN_PROGRESS"), f"boto3 StartIngestionJob: {job['ingestionJobId']} {job['status']}")
    deadline = time.time() + 60
    while job["status"] == "IN_PROGRESS" and time.time() < deadline:
        time.sleep(0.5)
        job = agent.get_ingestion_job(knowledgeBaseId=KB, dataSourceId=data_source,
                                      ingestionJobId=job["ingestionJobId"])["ingestionJob"]
    statistics = job["statistics"]
    check(job["status"] == "COMPLETE" and statistics["numberOfDocumentsScanned"] >= len(DOCS)
          and statistics["numberOfNewDocumentsIndexed"] == 0 and statistics["numberOfDocumentsFailed"] == 0,
          f"boto3 GetIngestionJob: COMPLETE, nothing new to index (every upload was evented): {statistics}")
    listed = agent.list_ingestion_jobs(knowledgeBaseId=KB, dataSourceId=data_source)["ingestionJobSummaries"]
    check(listed[0]["ingestionJobId"] == job["ingestionJobId"], "boto3 ListIngestionJobs lists it first")
    try:
        agent.get_ingestion_job(knowledgeBaseId=KB, dataSourceId="NOSUCHDS01", ingestionJobId=job["ingestionJobId"])
        sys.exit("bedrock clients: FAILED: another data source's job was found")
    except agent.exceptions.ResourceNotFoundException as error:
        check(True, f"boto3 catches ResourceNotFoundException for another data source: {error.response['Error']['Message']}")


def aws_cli():
    env = dict(os.environ, AWS_ACCESS_KEY_ID=KEYS["aws_access_key_id"],
               AWS_SECRET_ACCESS_KEY=KEYS["aws_secret_access_key"], AWS_REGION=REGION, AWS_DEFAULT_REGION=REGION)
    env.pop("AWS_ENDPOINT_URL", None)  # LocalStack's; docpipe's is given below
    command = ["aws", "bedrock-agent-runtime", "retrieve", "--endpoint-url", ENDPOINT,
               "--knowledge-base-id", KB, "--retrieval-query", json.dumps({"text": DOCS["b.md"][0]})]
    print("+ " + " ".join(command))
    answer = json.loads(subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout)
    check(answer["retrievalResults"][0]["location"]["s3Location"]["uri"] == PREFIX + "b.md",
          "aws bedrock-agent-runtime retrieve finds the copied sentence first")


def langchain():
    from langchain_aws import AmazonKnowledgeBasesRetriever
    from pydantic import SecretStr

    retriever = AmazonKnowledgeBasesRetriever(
        knowledge_base_id=KB,
        retrieval_config={"vectorSearchConfiguration": {"numberOfResults": 4, "filter": in_folder()}},
        min_score_confidence=0.5,
        endpoint_url=ENDPOINT,
        region_name=REGION,
        **{name: SecretStr(value) for name, value in KEYS.items()},
    )
    documents = retriever.invoke(DOCS["c.md"][0])
    check(documents and documents[0].page_content == DOCS["c.md"][0],
          f"LangChain AmazonKnowledgeBasesRetriever with min_score_confidence=0.5 keeps the relevant hit ({len(documents)} kept)")


def llama_index():
    from llama_index.retrievers.bedrock import AmazonKnowledgeBasesRetriever

    # Any boto3 client reads its service's endpoint from this variable.
    os.environ["AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME"] = ENDPOINT
    retriever = AmazonKnowledgeBasesRetriever(
        knowledge_base_id=KB,
        retrieval_config={"vectorSearchConfiguration": {"numberOfResults": 2, "filter": in_folder()}},
        region_name=REGION,
        **KEYS,
    )
    nodes = retriever.retrieve(DOCS["a.md"][0])
    check(nodes and nodes[0].get_content() == DOCS["a.md"][0], "LlamaIndex AmazonKnowledgeBasesRetriever finds the copied sentence first")


if __name__ == "__main__":
    upload()
    boto3_retrieve()
    boto3_errors()
    boto3_errors_of_a_strained_service()
    ingestion_jobs()
    aws_cli()
    langchain()
    llama_index()
    print("bedrock clients: passed")
