-- Argo CD health check for PoolPair (dr.lync.io/v1alpha1, poolpair-operator).
-- config/argocd/argocd-cm.yaml carries this script byte for byte (test/argocd checks it): edit both.
-- Argo CD runs custom checks without Lua's string library, so this script only concatenates.
--
-- The operator keeps kstatus conditions: Ready is always present once reconciled; Reconciling
-- (the step) and Stalled (why it stopped) are present only while True.
--   deletionTimestamp set     -> Progressing (Argo CD itself says "Pending deletion" first)
--   spec.suspend true         -> Suspended
--   no status/Ready yet, or status.observedGeneration < metadata.generation -> Progressing
--   Stalled True              -> Degraded (reason: message)
--   Reconciling True          -> Progressing (the step)
--   Ready True                -> Healthy (Synced, or FailedOver: users served by the partner pool)
--   otherwise                 -> Progressing (Ready's message)
local hs = {}

local function condition(conditionType)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

local function messageOf(c, default)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return default
end

local function reasonAndMessage(c)
  local reason = c.reason
  if reason == nil or reason == "" then
    reason = c.type
  end
  if c.message ~= nil and c.message ~= "" then
    return reason .. ": " .. c.message
  end
  return reason
end

local metadata = obj.metadata or {}
local spec = obj.spec or {}
local status = obj.status or {}
local ready = condition("Ready")
local reconciling = condition("Reconciling")
local stalled = condition("Stalled")
local waiting = "Waiting for the operator to observe the PoolPair"

-- Being deleted: always Progressing, as Argo CD reports any resource with a deletionTimestamp.
-- With deletionPolicy Retain the finalizer goes at once; with Unpair the phase is Deleting and
-- the Reconciling step says what runs, or Stalled UnpairBlocked says which agent cannot be
-- reached and how to let go without unpairing. Conditions from before the deletion are not used.
if metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  if status.phase ~= "Deleting" then
    hs.message = "Deleting: waiting for the operator to carry out spec.deletionPolicy"
  elseif isTrue(stalled) then
    hs.message = "Deleting, blocked: " .. reasonAndMessage(stalled)
  else
    hs.message = "Deleting: " .. messageOf(reconciling, messageOf(ready, "carrying out spec.deletionPolicy"))
  end
  return hs
end

if spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: nothing is observed or started until it is false again"
  return hs
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = waiting
  return hs
end

-- Conditions written for an older spec say nothing about the current one (as kstatus, and so Flux,
-- read them): a stall the edit fixed is not shown as Degraded.
local generation = metadata.generation
local observed = status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = waiting .. " (generation " .. generation .. ", status is of generation " .. (observed or 0) .. ")"
  return hs
end

if isTrue(stalled) then
  hs.status = "Degraded"
  hs.message = reasonAndMessage(stalled)
  return hs
end

if isTrue(reconciling) then
  hs.status = "Progressing"
  hs.message = messageOf(reconciling, messageOf(ready, reconciling.reason or "Reconciling"))
  return hs
end

if isTrue(ready) then
  hs.status = "Healthy"
  hs.message = messageOf(ready, ready.reason or "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = messageOf(ready, waiting)
return hs
