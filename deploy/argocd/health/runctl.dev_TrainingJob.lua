-- Argo CD health check for runctl.dev/TrainingJob (docs/gitops.md).
-- Phases: Pending, Provisioning, Running -> Progressing; Succeeded -> Healthy;
-- Failed -> Degraded; Suspended -> Suspended. A status older than the spec
-- (observedGeneration < generation) is Progressing, whatever its phase.
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
  local ready = condition(status, "Ready")
  if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
    return ready.message
  end
  return fallback
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the runctl operator to pick up the job"
  return hs
end

local status = obj.status
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the runctl operator to observe the latest spec"
  return hs
end

local phase = status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = detail(status, "Training finished")
elseif phase == "Failed" then
  hs.status = "Degraded"
  local reason = status.reason or "Failed"
  hs.message = reason .. ": " .. detail(status, "the job failed")
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = detail(status, "The job is suspended")
elseif phase == "Pending" or phase == "Provisioning" or phase == "Running" then
  local synced = condition(status, "Synced")
  hs.status = "Progressing"
  if synced ~= nil and synced.status == "False" then
    hs.message = phase .. " (retrying: " .. (synced.reason or "ReconcileError") .. ")"
  else
    hs.message = phase .. ": " .. detail(status, "in progress")
  end
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
