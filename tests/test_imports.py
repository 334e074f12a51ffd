"""The service's modules import each other without a cycle, and none imports another inside a function to hide one."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOT_MODULES = ("app", "configmodule", "metrics", "models", "schemas", "serve")


def service_modules():
    """Return {module name: path} of the design-card modules at the root and every module of the package."""
    modules = {name: ROOT / f"{name}.py" for name in ROOT_MODULES}
    for path in sorted((ROOT / "canary").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_names(node, module, is_package):
    """Return the module names an import statement names: the module itself and, for `from`, each name in it."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def imports_of(module, path, known, inside_functions=False):
    """Return the service modules a module imports at its top level, or only inside functions."""
    tree = ast.parse(path.read_text())
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(node) for function in functions for node in ast.walk(function) if node is not function}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and (id(node) in nested) == inside_functions:
            names = imported_names(node, module, path.name == "__init__.py")
            found.update(name for name in names if name in known and name != module)
    return found


def cycles(graph):
    """Return the import cycles of a graph {module: modules it imports}, each as a list of modules."""
    found, state, stack = [], {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                found.append(stack[stack.index(imported):] + [imported])
            elif imported not in state:
                visit(imported)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_service_modules_import_without_a_cycle():
    modules = service_modules()
    graph = {module: imports_of(module, path, modules) for module, path in modules.items()}
    assert len(graph) > 30 and graph["app"]  # the walk found the package and its imports
    assert cycles(graph) == []


def test_no_service_module_imports_another_inside_a_function():
    modules = service_modules()
    hidden = {module: found for module, path in modules.items()
              if (found := imports_of(module, path, modules, inside_functions=True))}
    assert hidden == {}


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
