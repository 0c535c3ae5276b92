"""The desk's default playbooks for the ten F11 failure modes (PRODUCT.md), as the YAML a
merchant would write. A merchant's ``playbooks:`` entry of the same name replaces one."""

from __future__ import annotations

import yaml

from recoverydesk.services.playbook_config import PlaybookSpec

CONTACT = "[order.customer_contact]"
_NOT_SHIPPED = "!order.shipped && !order.cancelled"
_AUTH_OPEN = 'order.payment == "authorized"'

DEFAULTS_YAML = f"""
payment_recovery:
  categories: [payment_failed]
  steps:
    - {{name: retry_authorization, do: command, after: PT1H, every: PT6H, times: 3,
       params: {{system: payments, action: retry_payment}},
       label: Retry the authorization}}
    - {{name: payment_update, do: message, after: PT2H, requires: {CONTACT},
       params: {{template: payment_retry_link}}, label: Ask the customer to pay again}}
    - {{name: capture_check, do: command, anchor: authorization_expires, after: -P1D,
       when: '{_AUTH_OPEN}', params: {{system: payments, action: capture_check}},
       label: Capture before the authorization expires}}
    - {{name: cancel_unpaid, do: stopship, mode: suggested, after: P1D,
       params: {{reason: payment_timeout}}, label: Cancel the unpaid order}}

fraud_hold:
  categories: [fraud_hold]
  steps:
    - name: verification
      do: check
      mode: manual
      label: Verify the order
      checklist: [AVS and CVV match, billing address = shipping address,
                  order history of the customer, contact the customer]
    - {{name: fraud_verification, do: decision, mode: suggested, requires: {CONTACT},
       params: {{template: fraud_verification, choices: [verify_identity, cancel],
                default: cancel, window: P1D}},
       label: Ask the customer to confirm the order}}
    - {{name: safe_release, do: command,
       when: 'order.value < thresholds.high_value && customer.tier == "vip"',
       params: {{system: storefront, action: release_hold}},
       label: Release a low-value order of a VIP customer}}
    - {{name: release_hold, do: command, mode: suggested,
       when: '!(order.value < thresholds.high_value && customer.tier == "vip")',
       params: {{system: storefront, action: release_hold}}, label: Release the hold}}
    - {{name: escalate_risk_owner, do: escalate, after: PT4H, params: {{role: fraud}},
       label: Escalate to the risk owner}}
    - {{name: capture_check, do: command, anchor: authorization_expires, after: -P1D,
       when: '{_AUTH_OPEN}', params: {{system: payments, action: capture_check}},
       label: Capture before the authorization expires}}
    - {{name: cancel_fraud, do: stopship, mode: suggested, when: 'case.choice != "cancel"',
       params: {{reason: fraud}}, label: Cancel as fraud}}
    - {{name: cancel_on_request, do: stopship, when: 'case.choice == "cancel"',
       params: {{reason: fraud}}, label: Cancel (the customer did not confirm)}}

address_fix:
  categories: [address_invalid]
  steps:
    - {{name: validate_address, do: address_check,
       label: Validate the address (a fixable format is corrected)}}
    - {{name: confirm_address, do: decision, after_step: validate_address, requires: {CONTACT},
       when: 'has(steps.validate_address.needs_customer) && steps.validate_address.needs_customer',
       params: {{template: address_confirm, choices: [confirm_address, correct_address, cancel],
                default: confirm_address, window: P1D}},
       label: Ask the customer to confirm the address}}
    - {{name: correct_by_hand, do: check, mode: manual, when: 'case.choice == "correct_address"',
       checklist: [address corrected with the customer], label: Correct the address}}
    - {{name: cancel_on_request, do: stopship, when: 'case.choice == "cancel"',
       params: {{reason: address}}, label: Cancel at the customer's request}}

inventory_mismatch:
  categories: [inventory_mismatch, split_shipment]
  steps:
    - {{name: locate_stock, do: command, params: {{system: wms, action: inventory_lookup}},
       label: Look for the stock}}
    - {{name: stock_decision, do: decision, after_step: locate_stock, requires: {CONTACT},
       when: 'case.choice == ""',
       params: {{template: stock_decision, choices: [substitute, split, wait, cancel],
                default: wait, window: P2D}},
       label: Ask the customer what to do}}
    - {{name: substitute, do: command, when: 'case.choice == "substitute"',
       params: {{system: storefront, action: line_swap}}, label: Swap in the substitute}}
    - {{name: split, do: command, when: 'case.choice == "split"',
       params: {{system: wms, action: split_shipment}}, label: Ship what is ready}}
    - {{name: backorder, do: message, when: 'case.choice == "wait"', requires: {CONTACT},
       params: {{template: backorder_confirmed}}, label: Confirm the backorder}}
    - {{name: cancel_on_request, do: stopship, when: 'case.choice == "cancel"',
       params: {{reason: stockout}}, label: Cancel at the customer's request}}

change_request:
  categories: [change_request]
  steps:
    - {{name: hold_before_cutoff, do: command,
       when: '{_NOT_SHIPPED} && has(case.data.change) && order.hours_to_ship_by > 0.0',
       params: {{system: wms, action: wms_hold}}, label: Hold the order while it changes}}
    - {{name: update_address, do: command,
       when: '{_NOT_SHIPPED} && has(case.data.change) && case.data.change == "address"',
       params: {{system: storefront, action: address_update}}, label: Update the address}}
    - {{name: update_ship_method, do: command,
       when: '{_NOT_SHIPPED} && has(case.data.change) && case.data.change == "ship_method"',
       params: {{system: wms, action: ship_method_update}}, label: Change the ship method}}
    - {{name: swap_line, do: command,
       when: '{_NOT_SHIPPED} && has(case.data.change) && case.data.change == "swap"',
       params: {{system: storefront, action: line_swap}}, label: Swap the item}}
    - {{name: edit_by_hand, do: check, mode: manual,
       when: 'has(case.data.change) && case.data.change == "edit"',
       checklist: [order edited in the storefront, warehouse told], label: Edit the order}}

wms_exception:
  categories: [wms_exception, late_shipment_risk]
  steps:
    - {{name: wms_status, do: command, params: {{system: wms, action: wms_status}},
       label: Ask the warehouse for the order's status}}
    - {{name: label_reprint, do: command,
       when: '(has(case.data.kind) && case.data.kind == "label")
              || (has(case.data.reason) && case.data.reason.contains("label"))',
       params: {{system: wms, action: label_reprint}}, label: Reprint the label}}
    - {{name: delay_notice, do: message, requires: {CONTACT},
       when: 'case.category == "late_shipment_risk" && {_NOT_SHIPPED}',
       params: {{template: delay_update}}, label: Tell the customer about the delay}}
    - {{name: carrier_trace, do: command, mode: suggested, requires: [order.tracking],
       when: 'order.fulfillment == "shipped"',
       params: {{system: carrier, action: trace}}, label: Trace the carrier hand-off}}
    - {{name: pick_pack_check, do: check, mode: manual, when: '{_NOT_SHIPPED}',
       checklist: [items picked, items packed, label printed], label: Check pick and pack}}

delivery_exception:
  categories: [delivery_exception]
  steps:
    - {{name: delay_message, do: message, requires: {CONTACT},
       when: 'has(case.data.kind) && case.data.kind == "delay"',
       params: {{template: delay_update}}, label: Tell the customer about the delay}}
    - {{name: reroute, do: decision, requires: {CONTACT},
       when: 'has(case.data.kind) && case.data.kind == "failed_attempt"',
       params: {{template: address_confirm, choices: [confirm_address, correct_address],
                default: confirm_address, window: P1D}},
       label: Confirm the address for a new attempt}}
    - {{name: replacement_or_refund, do: concession,
       when: 'has(case.data.kind) && case.data.kind in ["lost", "damaged"]',
       label: Reship or refund (the concessions matrix decides)}}
    - {{name: carrier_claim, do: command, requires: [order.tracking],
       when: 'has(case.data.kind) && case.data.kind in ["lost", "damaged"]',
       params: {{system: carrier, action: claim}}, label: File a carrier claim}}

refund_acceleration:
  categories: [refund_request]
  steps:
    - {{name: refund_status, do: command, params: {{system: payments, action: refund_lookup}},
       label: Look up the refund}}
    - {{name: refund_status_message, do: message, after_step: refund_status, requires: {CONTACT},
       params: {{template: refund_status}}, label: Tell the customer where the refund is}}
    - {{name: refund, do: check, mode: suggested, checklist: [refund sent from the ledger],
       label: Refund with the ledger's refund action}}

concessions:
  categories: [concession_request]
  steps:
    - {{name: concession, do: concession, label: "Decide: reship, refund or deny"}}
    - {{name: escalate_concession, do: escalate, after_step: concession,
       when: 'has(steps.concession.escalate) && steps.concession.escalate',
       params: {{role: finance}}, label: A lead decides the concession}}

chargeback:
  categories: [chargeback]
  steps:
    - {{name: evidence, do: evidence_pack, params: {{submit: false}},
       label: Stage the evidence pack}}
    - {{name: submit_evidence, do: command, mode: suggested, after_step: evidence,
       anchor: dispute_due, after: -P2D,
       params: {{system: payments, action: dispute_evidence, params: {{submit: true}}}},
       label: Submit the evidence}}
    - {{name: escalate_deadline, do: escalate, anchor: dispute_due, after: -PT48H,
       params: {{role: finance}}, label: Escalate to finance 48 hours before the deadline}}
"""


def _load() -> dict[str, PlaybookSpec]:
    document = yaml.safe_load(DEFAULTS_YAML)
    return {name: PlaybookSpec.model_validate(spec) for name, spec in document.items()}


DEFAULT_PLAYBOOKS: dict[str, PlaybookSpec] = _load()
