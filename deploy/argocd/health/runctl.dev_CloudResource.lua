-- Argo CD health check for runctl.dev/CloudResource (docs/gitops.md).
-- States: Starting, Stopping, Terminating -> Progressing; Running -> Healthy;
-- Stopped -> Suspended (kept on purpose, may still bill for storage);
-- Terminated -> Healthy (the machine is gone and bills nothing: the end state of every
-- finished attempt); Error -> Degraded; Unknown -> Unknown. A Synced=False condition on a
-- live machine is Degraded (the operator cannot reconcile it, e.g. lost credentials).
-- A status older than the spec (observedGeneration < generation) is Progressing.
local hs = {}

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function detail(status, fallback)
  if status.message ~= nil and status.message ~= "" then
    return status.message
  end
  return fallback
end

if obj.status == nil or obj.status.state == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the runctl operator to pick up the machine"
  return hs
end

local status = obj.status
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the runctl operator to observe the latest spec"
  return hs
end

local state = status.state
local synced = condition(status, "Synced")
if state == "Error" then
  hs.status = "Degraded"
  hs.message = (status.reason or "Error") .. ": " .. detail(status, "the machine failed")
elseif synced ~= nil and synced.status == "False" and state ~= "Terminated" then
  hs.status = "Degraded"
  hs.message = (synced.reason or "ReconcileError") .. ": " .. (synced.message or "the operator cannot reconcile this machine")
elseif state == "Running" then
  hs.status = "Healthy"
  hs.message = detail(status, "Machine is running")
elseif state == "Terminated" then
  hs.status = "Healthy"
  hs.message = detail(status, "Machine is terminated and no longer billing")
elseif state == "Stopped" then
  hs.status = "Suspended"
  hs.message = detail(status, "Machine is stopped")
elseif state == "Starting" or state == "Stopping" or state == "Terminating" then
  hs.status = "Progressing"
  hs.message = state .. ": " .. detail(status, "in progress")
else
  hs.status = "Unknown"
  hs.message = "Provider reported an unrecognised state: " .. detail(status, tostring(state))
end
return hs
