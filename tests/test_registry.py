"""Registries: a re-run notebook cell replaces its own entry; another module cannot take a taken name."""

import pytest

from dlstudies.errors import UsageError
from dlstudies.registry import Registry

CELL = '''
@ORDERS.register("reversed")
def reversed_order(y, seeds):
    return "version {}"
'''


def _run_cell(registry, version, module="__main__"):
    """Execute the notebook cell above as Jupyter does: in a namespace named `module`."""
    namespace = {"__name__": module, "ORDERS": registry}
    exec(CELL.format(version), namespace)
    return namespace["reversed_order"]


def test_a_rerun_cell_replaces_its_own_entry():
    orders = Registry("sample order")
    first = _run_cell(orders, 1)
    second = _run_cell(orders, 2)
    assert first is not second and orders.get("reversed") is second
    assert orders.get("reversed")(None, None) == "version 2"
    assert orders.owner("reversed") == "__main__.reversed_order"


def test_another_module_cannot_take_a_taken_name():
    orders = Registry("sample order")
    _run_cell(orders, 1, module="dlstudies.engine.schedule")
    with pytest.raises(UsageError, match="sample order 'reversed' is already registered by "
                                         "dlstudies.engine.schedule.reversed_order; __main__.reversed_order cannot"):
        _run_cell(orders, 2)
    assert orders.get("reversed")(None, None) == "version 1"  # the first entry stands


def test_the_same_object_registers_twice_under_one_name_or_two():
    registry = Registry("thing")
    item = object()
    registry.register("a", module="m1")(item)
    registry.register("a", module="m2")(item)  # the very same object: nothing to choose between
    registry.register("b")(item)
    assert registry.get("a") is item and registry.get("b") is item


def test_records_without_a_name_of_their_own_belong_to_the_registering_module():
    # A Study or a Loss is an instance: who registered it is the module that called register.
    from dlstudies.studies import STUDIES, load_studies
    from dlstudies.studies.base import register
    import dataclasses

    load_studies()
    study = STUDIES.get("optimizers")
    registry = Registry("study")
    registry.register("s", module="__main__")(study)
    registry.register("s", module="__main__")(dataclasses.replace(study, question="again?"))
    assert registry.get("s").question == "again?"
    with pytest.raises(UsageError, match="study 's' is already registered by __main__.<Study>; other.<Study> cannot"):
        registry.register("s", module="other")(dataclasses.replace(study, question="mine?"))
    with pytest.raises(UsageError, match="study 'optimizers' is already registered by dlstudies.studies.optimizers"):
        register(dataclasses.replace(study, question="a study of this test module"))
    assert STUDIES.get("optimizers") is study
