"""API reference, Advanced Usage / Custom Agent Implementation: a ``BaseAgent`` subclass.

    python examples/22_custom_agent.py    # the same in both modes (no model, no data)

``BaseAgent`` needs ``get_agent_role`` and ``execute``; ``parse_llm_response`` is optional (the
default turns a JSON reply into ``recommendations``). Agents log through ``self.logger`` and time
themselves with ``self.profiler``.
"""

from multi_agent_pruning.agents import BaseAgent, AgentResponse


class CustomAgent(BaseAgent):
    def get_agent_role(self) -> str:
        return "Custom pruning agent"

    def execute(self, input_data: dict) -> dict:
        # Custom implementation
        return {
            'success': True,
            'agent_name': self.agent_name,
            'custom_result': 'value'
        }

    def parse_llm_response(self, response: str, context: dict) -> AgentResponse:
        # Custom LLM response parsing
        return AgentResponse(
            success=True,
            reasoning=response,
            recommendations={},
            confidence=0.8,
            safety_checks={},
            warnings=[],
            timestamp='',
            agent_name=self.agent_name
        )


agent = CustomAgent(config={'any_key': 'a custom agent reads what it likes'})
print(f"Role: {agent.get_agent_role()}")
print(f"Result: {agent.execute({})}")
response = agent.parse_llm_response("Prune the MLPs first.", context={})
print(f"Parsed: confidence {response.confidence}, reasoning {response.reasoning!r}")
