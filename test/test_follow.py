"""Follow-me without ROS: who is followed, where the torso centre is, the throttle from apparent size, the stop
when the person is lost, and the settings with their ranges."""
import math
from dataclasses import asdict, replace

import pytest

from jetracer_trt.config import load_config
from jetracer_trt.control import ControlParams
from jetracer_trt.errors import JetracerError
from jetracer_trt.follow import (
    FOLLOW_SETTINGS, TORSO_PER_LEG, FollowMe, FollowSettings, sighting, throttle_scale_for,
)
from jetracer_trt.pose.people import Keypoint, Person
from jetracer_trt.safety import SafetyGovernor, SafetyLimits

W, H = 224, 224
SETTINGS = FollowSettings(far_size=0.15, stop_size=0.30, side_x=0.35, turn_scale=0.3, near_size=0.40,
                          lost_timeout_s=0.5, min_keypoints=5, match_distance=0.25)


def person(cx=112.0, torso=30.0, top=60.0, parts=None):
    """A standing figure: shoulders at ``top``, hips ``torso`` pixels below, torso centred on ``cx``."""
    points = {
        "nose": (cx, top - 20), "neck": (cx, top), "left_shoulder": (cx + 10, top), "right_shoulder": (cx - 10, top),
        "left_hip": (cx + 8, top + torso), "right_hip": (cx - 8, top + torso),
        "left_knee": (cx + 8, top + 1.8 * torso), "right_knee": (cx - 8, top + 1.8 * torso),
        "left_ankle": (cx + 8, top + 2.6 * torso), "right_ankle": (cx - 8, top + 2.6 * torso),
    }
    if parts is not None:
        points = {name: points[name] for name in parts}
    return Person({name: Keypoint(x, y, 0.9) for name, (x, y) in points.items()})


def test_the_defaults_are_config_follow_yaml_and_every_setting_has_a_range():
    assert asdict(FollowSettings.from_config()) == load_config("follow") == asdict(FollowSettings())
    assert set(FOLLOW_SETTINGS) == set(FollowSettings.names())


@pytest.mark.parametrize("overrides, message", [
    ({"far_size": 0.3, "stop_size": 0.2}, "stop_size"), ({"lost_timeout_s": -1}, "lost_timeout_s must be in"),
    ({"min_keypoints": 2.5}, "whole number"), ({"speed": 1}, "unknown setting 'speed'"),
    ({"turn_scale": 1.5}, "turn_scale must be in"), ({"side_x": 0.0}, "side_x must be in")])
def test_bad_settings_are_refused_with_the_reason(overrides, message):
    with pytest.raises(JetracerError, match=message):
        FollowSettings.from_config(overrides)


def test_the_torso_centre_is_the_mean_of_shoulders_and_hips_then_the_neck_then_all_keypoints():
    full = sighting(person(cx=168.0, torso=40.0, top=50.0), (W, H))
    assert full.x == pytest.approx(2 * 168 / W - 1) and full.y == pytest.approx(2 * 70 / H - 1)
    neck_only = sighting(person(cx=56.0, parts=("nose", "neck", "left_knee")), (W, H))
    assert neck_only.x == pytest.approx(2 * 56 / W - 1) and neck_only.y == pytest.approx(2 * 60 / H - 1)
    neither = sighting(person(cx=56.0, parts=("nose", "left_knee")), (W, H))
    assert neither.x == pytest.approx(2 * (56 + 4) / W - 1)


def test_the_size_is_the_torso_height_or_a_third_of_the_keypoints_box():
    assert sighting(person(torso=45.0), (W, H)).size == pytest.approx(45 / H)
    no_hips = sighting(person(torso=45.0, parts=("nose", "neck", "left_shoulder", "left_knee")), (W, H))
    assert no_hips.size == pytest.approx((20 + 1.8 * 45) / 3 / H)


def test_a_person_whose_upper_body_left_the_frame_is_measured_by_the_legs():
    """Near the low camera the shoulders leave the top of the frame first: hips to ankles tell the distance."""
    legs = person(torso=40.0, parts=("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle"))
    assert sighting(legs, (W, H)).size == pytest.approx(1.6 * 40 * TORSO_PER_LEG / H)
    whole = sighting(person(torso=40.0), (W, H)).size
    assert sighting(legs, (W, H)).size == pytest.approx(whole, rel=0.01)  # the same measure as the torso's
    assert FollowMe(SETTINGS).update([legs], (W, H), 0.0).reason == "following"


def test_a_person_seen_without_head_neck_shoulders_hips_or_ankles_is_too_close():
    knees = person(torso=20.0, parts=("left_hip", "right_hip", "left_knee", "right_knee"))
    target = FollowMe(replace(SETTINGS, min_keypoints=4)).update([knees], (W, H), 0.0)
    assert target.throttle_scale == 0.0 and target.reason == "too close" and math.isfinite(target.x)


def test_throttle_is_full_when_far_ramps_down_and_stops_when_too_close():
    assert throttle_scale_for(0.10, SETTINGS) == 1.0 == throttle_scale_for(0.15, SETTINGS)
    assert throttle_scale_for(0.225, SETTINGS) == pytest.approx(0.5)
    assert throttle_scale_for(0.30, SETTINGS) == 0.0 == throttle_scale_for(0.6, SETTINGS)
    far = FollowMe(SETTINGS).update([person(torso=0.1 * H)], (W, H), 0.0)
    assert far.throttle_scale == 1.0 and far.following and far.reason == "following"
    close = FollowMe(SETTINGS).update([person(torso=0.4 * H)], (W, H), 0.0)
    assert close.throttle_scale == 0.0 and close.following and close.reason == "too close"
    assert math.isfinite(close.x)  # still steering towards them


def test_a_person_off_to_the_side_gets_a_creep_to_turn_towards_unless_near():
    """A stopped car cannot turn: someone too close but walking off to the side would leave the view."""
    follow = FollowMe(SETTINGS)
    ahead = follow.update([person(cx=130.0, torso=0.32 * H)], (W, H), 0.0)
    assert ahead.throttle_scale == 0.0 and ahead.reason == "too close"
    side = follow.update([person(cx=175.0, torso=0.32 * H)], (W, H), 0.1)  # x 0.56: off to the side
    assert side.throttle_scale == SETTINGS.turn_scale and side.reason == "turning towards them" and side.x > 0.35
    left = FollowMe(SETTINGS).update([person(cx=40.0, torso=0.32 * H)], (W, H), 0.0)
    assert left.throttle_scale == SETTINGS.turn_scale and left.x < -0.35
    near = FollowMe(SETTINGS).update([person(cx=175.0, torso=0.42 * H)], (W, H), 0.0)  # near_size 0.40
    assert near.throttle_scale == 0.0 and near.reason == "too close"
    far = FollowMe(SETTINGS).update([person(cx=175.0, torso=0.1 * H)], (W, H), 0.0)
    assert far.throttle_scale == 1.0 and far.reason == "following"  # the creep is a floor, not a limit
    no_creep = FollowMe(replace(SETTINGS, turn_scale=0.0)).update([person(cx=175.0, torso=0.32 * H)], (W, H), 0.0)
    assert no_creep.throttle_scale == 0.0


def test_the_largest_person_is_chosen_then_kept_while_seen():
    follow = FollowMe(SETTINGS)
    small_left, large_right = person(cx=50.0, torso=20.0), person(cx=170.0, torso=40.0)
    assert follow.update([small_left, large_right], (W, H), 0.0).x == pytest.approx(2 * 170 / W - 1)
    # someone larger walks in on the left: the followed person (moved a little) stays chosen
    target = follow.update([person(cx=60.0, torso=60.0), person(cx=160.0, torso=40.0)], (W, H), 0.1)
    assert target.x == pytest.approx(2 * 160 / W - 1)


def test_people_with_too_few_keypoints_are_ignored():
    follow = FollowMe(SETTINGS)
    stray = person(cx=30.0, torso=80.0, parts=("nose", "neck", "left_shoulder", "left_hip"))
    target = follow.update([stray, person(cx=180.0)], (W, H), 0.0)
    assert target.x == pytest.approx(2 * 180 / W - 1)
    assert follow.update([stray], (W, H), 0.1).reason.startswith("lost")


def test_a_lost_person_is_held_for_the_timeout_then_the_car_stops_and_forgets_them():
    follow = FollowMe(SETTINGS)
    seen = follow.update([person(cx=140.0)], (W, H), 1.0)
    assert seen.throttle_scale == 1.0
    held = follow.update([], (W, H), 1.4)
    assert (held.x, held.following) == (seen.x, True)  # steering on towards where they were seen
    assert held.throttle_scale == SETTINGS.turn_scale  # but not at speed towards someone not seen
    assert held.reason == "lost for 0.4 s"
    gone = follow.update([], (W, H), 1.6)
    assert math.isnan(gone.x) and gone.throttle_scale == 0.0 and not gone.following
    assert gone.reason == "lost for 0.6 s"
    # forgotten: the next person seen is chosen afresh, wherever they are
    assert follow.update([person(cx=20.0)], (W, H), 2.0).x == pytest.approx(2 * 20 / W - 1)


def test_nobody_seen_stops():
    target = FollowMe(SETTINGS).update([], (W, H), 0.0)
    assert math.isnan(target.x) and target.throttle_scale == 0.0 and target.reason == "nobody seen"


def test_the_followed_target_drives_the_car_through_the_controller_and_stops_it_when_lost():
    """The sim loop's contract: FollowMe's targets through SafetyGovernor.on_target with their throttle scale."""
    governor = SafetyGovernor(ControlParams.from_config(profile="sim"), SafetyLimits(throttle_slew_per_s=100.0))
    follow = FollowMe(SETTINGS)
    commands = []
    for k in range(50):
        now = k / 30
        people = [person(cx=168.0, torso=(0.1 + 0.3 * k / 20) * H)] if k < 25 else []
        t = follow.update(people, (W, H), now)
        governor.on_target(t.x, 0.0, now, now, throttle_scale=t.throttle_scale)
        commands.append(governor.update(now))
    assert commands[3][0] > 0 and commands[3][1] > 0.3  # steering right, towards the person, at speed
    assert 0 < commands[12][1] < commands[3][1]  # slowing down as the person comes near
    assert commands[22] == pytest.approx((commands[22][0], 0.0))  # too close: stopped
    assert commands[-1] == (0.0, 0.0)  # lost past the timeout: stopped, wheels straight


def test_the_target_names_the_person_followed_among_those_given():
    follow = FollowMe(SETTINGS)
    stray = person(parts=("nose", "neck"))
    assert follow.update([stray, person(cx=50.0, torso=20.0), person(cx=170.0, torso=40.0)], (W, H), 0.0).person == 2
    assert follow.update([], (W, H), 0.1).person == -1  # held, but not in this frame
