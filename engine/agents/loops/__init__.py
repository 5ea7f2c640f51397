"""Agent loops: function calling, ReAct and plan-then-execute, on one base that holds the limits."""
