"""stack.yml parsing: fields, ${VAR} substitution, filters, and file:line in every error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from stoker.spec import FunctionDeployment
from stoker.stack import Stack, StackError, filter_functions, load_stack, parse_stack

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "stack.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def make_handler(tmp_path: Path, name: str, module: str = "handler.py") -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / module).write_text("def handle(event, context):\n    return 'ok'\n")
    return folder


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Stack:
    return load_stack(write(tmp_path, text), env or {})


def error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> StackError:
    with pytest.raises(StackError) as info:
        load(tmp_path, text, env)
    return info.value


FULL = """
version: 1.0
provider:
  name: stoker
  gateway: http://gw.example:8080/
functions:
  hello:
    lang: python3-http
    handler: ./hello
    image: registry.example/hello:1.0
    namespace: team-a
    fprocess: python index.py
    environment:
      RATIO: 1.0
      DEBUG: true
      EMPTY:
    labels:
      com.openfaas.scale.min: 2
      com.openfaas.scale.max: "4"
    annotations:
      com.stoker.timeout: 30s
    secrets: [api-key, db-password]
    limits: {memory: 256Mi, cpu: "1"}
    requests:
      memory: 64Mi
    readonly_root_filesystem: true
    build_args:
      PIP_INDEX: https://pypi.example
    constraints:
      - node.platform.os == linux
    skip_build: true
  image-only:
    image: ghcr.io/openfaas/figlet:latest
"""


def test_full_stack(tmp_path: Path) -> None:
    make_handler(tmp_path, "hello")
    stack = load(tmp_path, FULL)
    assert (stack.version, stack.provider, stack.gateway) == ("1.0", "stoker", "http://gw.example:8080")
    hello, figlet = stack.functions
    assert hello.name == "hello" and hello.line == 6
    assert hello.handler_dir == (tmp_path / "hello").resolve()
    assert hello.namespace == "team-a" and hello.lang == "python3-http"
    # Values keep their text, as faas-cli's map[string]string does.
    assert hello.env == {"RATIO": "1.0", "DEBUG": "true", "EMPTY": ""}
    assert hello.labels == {"com.openfaas.scale.min": "2", "com.openfaas.scale.max": "4"}
    assert hello.secrets == ["api-key", "db-password"]
    assert hello.limits == {"memory": "256Mi", "cpu": "1"} and hello.requests == {"memory": "64Mi"}
    assert hello.readonly_root_filesystem is True
    assert hello.build_args == {"PIP_INDEX": "https://pypi.example"}
    assert hello.constraints == ["node.platform.os == linux"]
    assert figlet.handler_dir is None and figlet.image == "ghcr.io/openfaas/figlet:latest"


def test_to_deployment_uses_openfaas_field_names(tmp_path: Path) -> None:
    make_handler(tmp_path, "hello")
    hello, figlet = load(tmp_path, FULL).functions
    body = hello.to_deployment("c291cmNl")
    assert body == {
        "service": "hello",
        "namespace": "team-a",
        "image": "",  # with source, no image: the stack's image: is what `stoker build` tags for faas-cli
        "envProcess": "python index.py",
        "envVars": {"RATIO": "1.0", "DEBUG": "true", "EMPTY": ""},
        "constraints": ["node.platform.os == linux"],
        "secrets": ["api-key", "db-password"],
        "labels": {"com.openfaas.scale.min": "2", "com.openfaas.scale.max": "4"},
        "annotations": {"com.stoker.timeout": "30s"},
        "limits": {"memory": "256Mi", "cpu": "1"},
        "requests": {"memory": "64Mi"},
        "readOnlyRootFilesystem": True,
        "source": "c291cmNl",
    }
    assert FunctionDeployment.from_json(body).service == "hello"  # what the gateway will accept
    assert figlet.to_deployment()["image"] == "ghcr.io/openfaas/figlet:latest"  # no folder: the image is deployed


def test_default_namespace_in_deployment(tmp_path: Path) -> None:
    make_handler(tmp_path, "fn")
    fn = load(tmp_path, "functions:\n  fn:\n    handler: ./fn\n").functions[0]
    assert fn.namespace == "" and fn.to_deployment()["namespace"] == "openfaas-fn"


def test_openfaas_provider_deploys_unchanged(tmp_path: Path) -> None:
    make_handler(tmp_path, "fn")
    text = """
    provider:
      name: openfaas
      gateway: http://127.0.0.1:8080
    functions:
      fn:
        lang: python3-http
        handler: ./fn
        image: me/fn:latest
    """
    stack = load(tmp_path, text)
    assert stack.provider == "openfaas" and stack.functions[0].handler_dir is not None


def test_image_with_non_python_handler_folder_deploys_the_image(tmp_path: Path) -> None:
    (tmp_path / "node-fn").mkdir()
    (tmp_path / "node-fn" / "handler.js").write_text("module.exports = () => 'hi'\n")
    fn = load(
        tmp_path, "functions:\n  node-fn:\n    lang: node18\n    handler: ./node-fn\n    image: me/n:1\n"
    ).functions[0]
    assert fn.handler_dir is None and fn.image == "me/n:1"


def test_entrypoint_annotation_changes_the_required_module(tmp_path: Path) -> None:
    make_handler(tmp_path, "fn", "main.py")
    text = "functions:\n  fn:\n    handler: ./fn\n    annotations: {com.stoker.entrypoint: main:handle}\n"
    assert load(tmp_path, text).functions[0].handler_dir == (tmp_path / "fn").resolve()


def test_handler_resolves_against_the_stack_folder(tmp_path: Path) -> None:
    make_handler(tmp_path / "proj", "fn")
    path = write(tmp_path / "proj", "functions:\n  fn:\n    handler: fn\n")
    assert load_stack(path, {}).functions[0].handler_dir == (tmp_path / "proj" / "fn").resolve()


def test_merge_keys_and_extension_sections(tmp_path: Path) -> None:
    make_handler(tmp_path, "a")
    text = """
    x-defaults: &defaults
      environment: &env {A: "1", B: "2"}
      labels: {com.openfaas.scale.min: "0"}
    functions:
      a:
        <<: *defaults
        handler: ./a
        environment:
          <<: *env
          B: "3"
      b:
        <<: [*defaults]
        image: x
    """
    a, b = load(tmp_path, text).functions
    assert a.env == {"A": "1", "B": "3"} and a.labels == {"com.openfaas.scale.min": "0"}
    assert b.env == {"A": "1", "B": "2"} and b.image == "x"


def test_shipped_example_stack_loads() -> None:
    stack = load_stack(ROOT / "functions" / "stack.yml", {})
    assert [f.name for f in stack.functions] == ["hello", "echo", "wordcount"]
    assert all(f.handler_dir and (f.handler_dir / "handler.py").is_file() for f in stack.functions)


# -- ${VAR} substitution -------------------------------------------------------------------------


def test_environment_substitution(tmp_path: Path) -> None:
    make_handler(tmp_path, "fn")
    text = """
    provider:
      name: stoker
      gateway: ${GATEWAY:-http://127.0.0.1:8080}
    functions:
      fn:
        handler: ./fn
        image: ${REGISTRY}/fn:${TAG:-latest}
        environment:
          SET: ${SET}
          UNSET: ${NOT_SET}
          EMPTY_DEFAULT: ${EMPTY:-fallback}
          DASH_ONLY: ${EMPTY-kept-empty}
          LITERAL: $${NOT_SUBSTITUTED}
          DOLLAR: price $5
        readonly_root_filesystem: ${RO:-true}
    """
    env = {"REGISTRY": "reg.example", "SET": "value", "EMPTY": ""}
    stack = load(tmp_path, text, env)
    fn = stack.functions[0]
    assert stack.gateway == "http://127.0.0.1:8080"
    assert fn.image == "reg.example/fn:latest"
    assert fn.env == {
        "SET": "value",
        "UNSET": "",
        "EMPTY_DEFAULT": "fallback",
        "DASH_ONLY": "",
        "LITERAL": "${NOT_SUBSTITUTED}",
        "DOLLAR": "price $5",
    }
    assert fn.readonly_root_filesystem is True  # a plain scalar takes the type of its substituted text


def test_substitution_in_function_names(tmp_path: Path) -> None:
    make_handler(tmp_path, "fn")
    stack = load(tmp_path, "functions:\n  ${PREFIX}-fn:\n    handler: ./fn\n", {"PREFIX": "dev"})
    assert stack.functions[0].name == "dev-fn"


def test_required_variable_names_the_line(tmp_path: Path) -> None:
    exc = error(tmp_path, "functions:\n  fn:\n    image: ${IMAGE:?set IMAGE to the image to deploy}\n")
    assert str(exc).startswith(f"{tmp_path / 'stack.yml'}:3: ")
    assert "set IMAGE to the image to deploy" in str(exc)


def test_malformed_variable_reference(tmp_path: Path) -> None:
    exc = error(tmp_path, "functions:\n  fn:\n    image: ${IMAGE\n")
    assert ":3: " in str(exc) and "invalid variable reference" in str(exc)


# -- every error names file:line -----------------------------------------------------------------


def test_yaml_syntax_error(tmp_path: Path) -> None:
    exc = error(tmp_path, "functions:\n  fn:\n    image: x\n   labels: [\n")
    assert str(exc).startswith(f"{tmp_path / 'stack.yml'}:4: invalid YAML: ")
    assert exc.line == 4 and exc.path == str(tmp_path / "stack.yml")


def test_yaml_unclosed_quote(tmp_path: Path) -> None:
    exc = error(tmp_path, 'functions:\n  fn:\n    image: "x\n')
    assert "invalid YAML" in str(exc) and exc.line > 0


def test_invalid_function_name(tmp_path: Path) -> None:
    exc = error(tmp_path, "functions:\n  ok:\n    image: x\n  Bad_Name:\n    image: y\n")
    assert str(exc).startswith(f'{tmp_path / "stack.yml"}:4: function "Bad_Name": ')
    assert "'Bad_Name' is invalid" in str(exc)


def test_missing_handler_py(tmp_path: Path) -> None:
    (tmp_path / "fn").mkdir()
    exc = error(tmp_path, "functions:\n  fn:\n    lang: python3-http\n    handler: ./fn\n")
    assert ':4: function "fn": ' in str(exc) and "has no handler.py" in str(exc)


def test_missing_handler_folder(tmp_path: Path) -> None:
    exc = error(tmp_path, "functions:\n  fn:\n    handler: ./nowhere\n")
    assert ':3: function "fn": ' in str(exc) and "does not exist" in str(exc)


def test_neither_handler_nor_image(tmp_path: Path) -> None:
    exc = error(tmp_path, "functions:\n  fn:\n    lang: python3-http\n")
    assert ':2: function "fn": has neither a handler folder nor an image' in str(exc)


def test_function_without_settings(tmp_path: Path) -> None:
    assert ':2: function "fn": ' in str(error(tmp_path, "functions:\n  fn:\n"))


def test_unknown_provider(tmp_path: Path) -> None:
    exc = error(tmp_path, "provider:\n  name: lambda\nfunctions:\n  fn:\n    image: x\n")
    assert ":2: provider name 'lambda' is not supported" in str(exc)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("labels: [a, b]", "labels must be a mapping, not a list"),
        ("annotations: text", "annotations must be a mapping"),
        ("environment: [A=1]", "environment must be a mapping"),
        ("environment: {A: [1]}", "environment.A must be a string"),
        ("secrets: {a: b}", "secrets must be a list, not a mapping"),
        ("secrets: [Not_Valid]", "secret name 'Not_Valid' is invalid"),
        ("constraints: {a: b}", "constraints must be a list"),
        ("limits: {gpu: 1}", "limits: unknown resource 'gpu'"),
        ("requests: [1]", "requests must be a mapping"),
        ("readonly_root_filesystem: maybe", "readonly_root_filesystem must be true or false"),
        ("namespace: Team_A", "namespace name 'Team_A' is invalid"),
        ("lang: {a: b}", "lang must be a string"),
        ("image: y", "'image' is given twice"),
        ("colour: blue", "unknown field 'colour'"),
        ("labels: {com.openfaas.scale.min: lots}", "com.openfaas.scale.min: 'lots' is not a whole number"),
        ("annotations: {com.stoker.timeout: soon}", "com.stoker.timeout: 'soon' is not a duration"),
    ],
)
def test_wrong_types_name_the_line(tmp_path: Path, field: str, expected: str) -> None:
    exc = error(tmp_path, f"version: 1.0\nfunctions:\n  fn:\n    image: x\n    {field}\n")
    assert str(exc).startswith(f'{tmp_path / "stack.yml"}:5: function "fn": '), str(exc)
    assert expected in str(exc)


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("", 0, "the file is empty"),
        ("- a\n- b\n", 1, "the stack file must be a mapping"),
        ("version: 1.0\n", 1, "no functions section"),
        ("functions: {}\n", 1, "the functions section is empty"),
        ("functions: [a]\n", 1, "functions must be a mapping"),
        ("functions:\n  fn: text\n", 2, 'function "fn": its settings must be a mapping'),
        ("functions:\n  fn:\n    image: x\nextras: 1\n", 4, "unknown section 'extras'"),
        ("functions:\n  fn:\n    image: x\n  fn:\n    image: y\n", 4, "'fn' is given twice"),
        ("provider: stoker\nfunctions:\n  fn:\n    image: x\n", 1, "provider must be a mapping"),
    ],
)
def test_structure_errors(tmp_path: Path, text: str, line: int, expected: str) -> None:
    exc = error(tmp_path, text)
    where = f"{tmp_path / 'stack.yml'}:{line}: " if line else f"{tmp_path / 'stack.yml'}: "
    assert str(exc).startswith(where), str(exc)
    assert expected in str(exc)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="no such file"):
        load_stack(tmp_path / "absent.yml")


def test_parse_stack_names_the_given_path(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"^custom\.yml:2: "):
        parse_stack("functions:\n  Bad:\n    image: x\n", "custom.yml", tmp_path, {})


# -- environment files ---------------------------------------------------------------------------


def test_environment_files_override_inline_environment(tmp_path: Path) -> None:
    write(tmp_path, "environment:\n  A: from-file\n  B: ${B_VALUE:-b}\n", "env.yml")
    inline = "environment: {A: inline, C: c}"
    text = f"functions:\n  fn:\n    image: x\n    {inline}\n    environment_file: [env.yml]\n"
    assert load(tmp_path, text).functions[0].env == {"A": "from-file", "B": "b", "C": "c"}


def test_environment_file_errors_name_that_file(tmp_path: Path) -> None:
    write(tmp_path, "environment:\n  A: [1]\n", "env.yml")
    exc = error(tmp_path, "functions:\n  fn:\n    image: x\n    environment_file: [env.yml]\n")
    assert str(exc).startswith(f"{tmp_path / 'env.yml'}:2: ")


def test_missing_environment_file(tmp_path: Path) -> None:
    exc = error(tmp_path, "functions:\n  fn:\n    image: x\n    environment_file:\n      - nope.yml\n")
    assert ':5: function "fn": environment_file' in str(exc)


# -- filters -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "names"),
    [
        (None, ["hello", "echo", "wordcount"]),
        ("*", ["hello", "echo", "wordcount"]),
        ("hello", ["hello"]),
        ("w*", ["wordcount"]),
        ("?cho", ["echo"]),
        ("[eh]*", ["hello", "echo"]),
        ("*o*", ["hello", "echo", "wordcount"]),
        ("nothing*", []),
    ],
)
def test_filter_globs(pattern: str | None, names: list[str]) -> None:
    stack = load_stack(ROOT / "functions" / "stack.yml", {})
    assert [f.name for f in filter_functions(stack.functions, pattern)] == names


def test_select_without_match_is_an_error() -> None:
    stack = load_stack(ROOT / "functions" / "stack.yml", {})
    with pytest.raises(StackError, match="no function matches --filter 'zzz'"):
        stack.select("zzz")
